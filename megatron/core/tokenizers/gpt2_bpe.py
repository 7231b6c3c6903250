"""GPT2BPETokenizer: GPT-2's byte-level BPE from a ``vocab.json`` and a ``merges.txt``.

Encoding runs in Hugging Face ``tokenizers`` (Rust) configured to behave exactly like Megatron-LM's
pure-Python GPT-2 tokenizer: the same pre-tokenization regex, the same byte-to-character table,
merges ranked by their order in the file, and no special-token matching inside text (Megatron-LM
encodes a literal "<|endoftext|>" in a document as ordinary text; only ``eod`` is the id).
"""
import json
from functools import lru_cache
from typing import Dict, List, Tuple

from megatron.core.tokenizers.base import MegatronTokenizer

EOD_TOKEN = "<|endoftext|>"


@lru_cache(maxsize=1)
def byte_to_char() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable character table.

    Printable Latin-1 bytes map to themselves; the other 68 bytes (control characters, space,
    0x7F-0xA0, 0xAD) map to 256, 257, ... in byte order, so every token is a visible string.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {b: chr(b) for b in printable}
    next_code = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(next_code)
            next_code += 1
    return table


@lru_cache(maxsize=1)
def char_to_byte() -> Dict[str, int]:
    return {c: b for b, c in byte_to_char().items()}


def read_merges(merge_file: str) -> List[Tuple[str, str]]:
    """Merge rules in rank order, read the way Megatron-LM reads them.

    Megatron-LM drops the first line (the ``#version`` header) and the last element after
    splitting on newlines (empty when the file ends with a newline), so a file without the
    header or without the final newline loses a merge there too; we keep that, because the
    token ids must match. Lines that are not two symbols never match and are skipped.
    """
    with open(merge_file, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:-1]
    merges = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
    return merges


def build_byte_level_bpe(vocab: Dict[str, int], merges: List[Tuple[str, str]], where: str):
    """A ``tokenizers.Tokenizer`` doing GPT-2 byte-level BPE with no special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    try:
        model = models.BPE(vocab=vocab, merges=merges)
    except Exception as err:  # the Rust side reports merges whose symbols are not in the vocab
        raise ValueError(
            f"{where}: the vocab and merges do not fit together ({err}); pass the vocab.json and "
            "merges.txt that were saved together"
        ) from err
    tokenizer = Tokenizer(model)
    # use_regex=True is GPT-2's split pattern ('s|'t|... | ?\p{L}+| ?\p{N}+|...).
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return tokenizer


def encode_batch_ids(tokenizer, texts: List[str], add_special_tokens: bool) -> List[List[int]]:
    """Batched encode; ``encode_batch_fast`` skips offset tracking where the library has it."""
    encode = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch
    return [e.ids for e in encode(list(texts), add_special_tokens=add_special_tokens)]


class GPT2BPETokenizer(MegatronTokenizer):
    megatron_class_name = "_GPT2BPETokenizer"

    def __init__(self, vocab_file: str, merge_file: str):
        super().__init__(vocab_file, merge_file)
        with open(vocab_file, encoding="utf-8") as f:
            try:
                self._vocab: Dict[str, int] = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"--vocab-file {vocab_file}: expected a GPT-2 vocab.json (a JSON object "
                    f"token -> id), could not parse it: {err}"
                ) from err
        if not isinstance(self._vocab, dict):
            raise ValueError(f"--vocab-file {vocab_file}: expected a JSON object token -> id")
        if EOD_TOKEN not in self._vocab:
            raise ValueError(
                f"--vocab-file {vocab_file}: no {EOD_TOKEN} token, which GPT2BPETokenizer uses as "
                "eod; add it to the vocab (tools/train_tokenizer.py does) or use another type"
            )
        self._inv_vocab = {i: t for t, i in self._vocab.items()}
        merges = read_merges(merge_file)
        where = f"--vocab-file {vocab_file} / --merge-file {merge_file}"
        self._tokenizer = build_byte_level_bpe(self._vocab, merges, where)
        self._eod = self._vocab[EOD_TOKEN]
        self._word_encoder = None  # made on first use, if exact for this tokenizer
        self._word_encoder_tried = False

    def tokenize(self, text: str) -> List[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        # Same ids, word by word through a cache (byte_level_words.py); built on first use so
        # that programs which never tokenize in bulk do not pay for it.
        if not self._word_encoder_tried:
            self._word_encoder_tried = True
            from megatron.core.tokenizers.byte_level_words import ByteLevelWordEncoder

            self._word_encoder = ByteLevelWordEncoder.for_tokenizer(self._tokenizer, False)
        if self._word_encoder is not None:
            return self._word_encoder.encode_batch(texts)
        return encode_batch_ids(self._tokenizer, texts, add_special_tokens=False)

    def detokenize(self, ids: List[int]) -> str:
        # Done here rather than by the library so undecodable byte runs become U+FFFD exactly
        # as Python's errors="replace" (Megatron-LM's choice) makes them.
        to_byte = char_to_byte()
        data = bytearray(to_byte[c] for i in ids for c in self._inv_vocab[int(i)])
        return data.decode("utf-8", errors="replace")

    @property
    def eod(self) -> int:
        return self._eod

    @property
    def eos(self) -> int:
        return self._eod

