"""NullTokenizer: the text is already token ids written as decimal numbers separated by spaces.

For synthetic data and benchmarks (``--tokenizer-type NullTokenizer --vocab-size N``). As in
Megatron-LM, ids 0..N-1 are the caller's, eod is N, and the vocabulary has N+1 entries. The
legacy class also answers eos = N and cls = sep = mask = -1; megatron-core's current one has
eod only.
"""
from typing import List

from megatron.core.errors import ConfigError, DataError
from megatron.core.tokenizers.base import MegatronTokenizer, current_identifiers


class NullTokenizer(MegatronTokenizer):
    megatron_class_name = "_NullTokenizer"

    def __init__(self, vocab_size: int, legacy: bool = False):
        super().__init__(None, vocab_size=vocab_size)
        self.legacy = legacy
        if not legacy:
            self._set_identifiers(current_identifiers(None, vocab_size=vocab_size))
        self._size_without_eod = int(vocab_size)
        if self._size_without_eod <= 0:
            raise ConfigError(f"--vocab-size: NullTokenizer needs a positive size, got {vocab_size}")

    def tokenize(self, text: str) -> List[int]:
        try:
            return [int(x) for x in text.split(" ")]
        except ValueError as err:
            raise DataError(
                "NullTokenizer: expected the text to be integer ids separated by single spaces "
                f"({err}); use a real --tokenizer-type for plain text"
            ) from err

    def detokenize(self, ids: List[int]) -> str:
        return " ".join(str(int(i)) for i in ids)

    def offsets(self, ids: List[int], text: str) -> List[int]:
        starts, position = [], 0
        for token_id in ids:
            starts.append(position)
            position += 1 + len(str(token_id))
        return starts

    @property
    def vocab_size(self) -> int:
        return self._size_without_eod + 1

    @property
    def vocab(self):
        raise NotImplementedError("NullTokenizer has no vocabulary: its tokens are numbers")

    @property
    def inv_vocab(self):
        raise NotImplementedError("NullTokenizer has no vocabulary: its tokens are numbers")

    @property
    def cls(self) -> int:
        return -1 if self.legacy else self._missing("cls")

    @property
    def sep(self) -> int:
        return -1 if self.legacy else self._missing("sep")

    @property
    def mask(self) -> int:
        return -1 if self.legacy else self._missing("mask")

    @property
    def eod(self) -> int:
        return self._size_without_eod

    @property
    def eos(self) -> int:
        return self._size_without_eod if self.legacy else self._missing("eos")
