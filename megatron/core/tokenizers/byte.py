"""ByteTokenizer: ids 0..255 are the UTF-8 bytes of the text, then a few special ids.

Our own type (``--tokenizer-type ByteTokenizer``), not one of Megatron-LM's: it needs no files,
so a first run (the quickstart) can turn any text into tokens before a vocabulary is trained.
Every text round-trips exactly.
"""
from typing import Dict, List

from megatron.core.tokenizers.base import MegatronTokenizer

NUM_BYTES = 256
SPECIAL_TOKENS = ("<|endoftext|>", "<pad>", "<bos>")  # ids 256, 257, 258


class ByteTokenizer(MegatronTokenizer):
    def __init__(self):
        super().__init__()
        self._vocab: Dict[str, int] = {f"<0x{b:02X}>": b for b in range(NUM_BYTES)}
        for offset, token in enumerate(SPECIAL_TOKENS):
            self._vocab[token] = NUM_BYTES + offset
        self._inv_vocab = {i: t for t, i in self._vocab.items()}

    def tokenize(self, text: str) -> List[int]:
        return list(text.encode("utf-8"))

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def detokenize(self, ids: List[int]) -> str:
        # Bytes are decoded in runs; special ids are written by name between the runs.
        out, run = [], bytearray()
        for token_id in (int(i) for i in ids):
            if 0 <= token_id < NUM_BYTES:
                run.append(token_id)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            if token_id not in self._inv_vocab:
                raise ValueError(
                    f"ByteTokenizer: id {token_id} is outside 0..{self.vocab_size - 1}")
            out.append(self._inv_vocab[token_id])
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    @property
    def eod(self) -> int:
        return self._vocab["<|endoftext|>"]

    @property
    def eos(self) -> int:
        return self._vocab["<|endoftext|>"]

    @property
    def pad(self) -> int:
        return self._vocab["<pad>"]

    @property
    def bos(self) -> int:
        return self._vocab["<bos>"]
