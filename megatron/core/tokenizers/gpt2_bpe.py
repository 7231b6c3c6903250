"""GPT2BPETokenizer: GPT-2's byte-level BPE from a ``vocab.json`` and a ``merges.txt``.

Encoding runs in Hugging Face ``tokenizers`` (Rust) configured to behave exactly like Megatron-LM's
tokenizers: the same pre-tokenization regex, the same byte-to-character table, merges ranked by
their order in the file. The two modes differ only in the text "<|endoftext|>":

* current (Megatron-LM's default: transformers' GPT-2 tokenizer behind megatron-core): the text
  "<|endoftext|>" in a document is the eod token, as transformers matches special tokens;
* legacy (--legacy-tokenizer: Megatron-LM's own Python GPT-2 tokenizer): it is ordinary text
  (``<``, ``|``, ``endoftext`` ...); only ``eod`` is the id.
"""
import json
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from megatron.core.errors import DataError
from megatron.core.tokenizers.base import MegatronTokenizer, current_identifiers

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
    token ids must match. Blank lines are skipped. A file without any merge rule, or with a
    line that is not two symbols, is refused: BPE would silently encode byte by byte.
    """
    where = f"--merge-file {merge_file}"
    expected = "a GPT-2 merges.txt (a #version line, then one merge rule 'a b' per line)"
    try:
        with open(merge_file, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: expected {expected}, but it is not UTF-8 text ({err})") from err
    if not text.strip():
        raise DataError(f"{where} is empty: expected {expected}")
    merges = []
    for number, line in enumerate(text.split("\n")[1:-1], start=2):
        parts = line.split()
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
        elif parts:
            raise DataError(f"{where}: line {number} is {line[:80]!r}; expected {expected}")
    if not merges:
        raise DataError(f"{where} has no merge rules after its first line: expected {expected}")
    return merges


def read_vocab_json(vocab_file: str) -> Dict[str, int]:
    """GPT-2's vocab.json (token -> id), refused with the flag and file named when it is empty
    or not a JSON object of integer ids."""
    where = f"--vocab-file {vocab_file}"
    expected = "a GPT-2 vocab.json (a JSON object token -> id)"
    try:
        with open(vocab_file, encoding="utf-8") as f:
            vocab = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: expected {expected}, could not parse it: {err}") from err
    if not isinstance(vocab, dict) or not vocab:
        raise DataError(f"{where}: expected {expected}, found "
                        f"{'an empty object' if vocab == {} else type(vocab).__name__}")
    bad = next((t for t, i in vocab.items() if type(i) is not int or i < 0), None)
    if bad is not None:
        raise DataError(f"{where}: the id of {bad!r} is {vocab[bad]!r}; expected {expected} "
                        "with non-negative integer ids")
    return vocab


def build_byte_level_bpe(vocab: Dict[str, int], merges: List[Tuple[str, str]], where: str):
    """A ``tokenizers.Tokenizer`` doing GPT-2 byte-level BPE with no special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    try:
        model = models.BPE(vocab=vocab, merges=merges)
    except Exception as err:  # the Rust side reports merges whose symbols are not in the vocab
        raise DataError(
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

    def __init__(self, vocab_file: str, merge_file: str, legacy: bool = False,
                 use_fast: bool = False, trust_remote_code: bool = False):
        # use_fast / trust_remote_code only enter the identifiers, as in Megatron-LM (one
        # implementation here, and no code is loaded).
        super().__init__(vocab_file, merge_file)
        self.legacy = legacy
        if not legacy:
            self._set_identifiers(current_identifiers(
                "GPT2BPETokenizer", additional_special_tokens=[], vocab_file=vocab_file,
                merges_file=merge_file, use_fast=use_fast, trust_remote_code=trust_remote_code,
                include_special_tokens=False))
        self._vocab: Dict[str, int] = read_vocab_json(vocab_file)
        if EOD_TOKEN not in self._vocab:
            raise DataError(
                f"--vocab-file {vocab_file}: no {EOD_TOKEN} token, which GPT2BPETokenizer uses as "
                "eod; add it to the vocab (tools/train_tokenizer.py does) or use another type"
            )
        self._inv_vocab = {i: t for t, i in self._vocab.items()}
        merges = read_merges(merge_file)
        where = f"--vocab-file {vocab_file} / --merge-file {merge_file}"
        self._tokenizer = build_byte_level_bpe(self._vocab, merges, where)
        if not legacy:  # matched in the text wherever it is written, like transformers does
            self._tokenizer.add_special_tokens([EOD_TOKEN])
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

    # transformers' GPT-2 tokenizer names <|endoftext|> bos, eos and unk; megatron-core then
    # takes bos for cls and eos for sep. The legacy class has none of these.

    @property
    def bos(self) -> int:
        return self._missing("bos") if self.legacy else self._eod

    @property
    def cls(self) -> int:
        return self._missing("cls") if self.legacy else self._eod

    @property
    def sep(self) -> int:
        return self._missing("sep") if self.legacy else self._eod

    @property
    def pad(self) -> Optional[int]:
        return self._missing("pad") if self.legacy else None

    @property
    def mask(self) -> Optional[int]:
        return self._missing("mask") if self.legacy else None

