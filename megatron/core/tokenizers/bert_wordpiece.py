"""BertWordPieceLowerCase / BertWordPieceCase: BERT's WordPiece over a ``vocab.txt``.

The pipeline is built from Hugging Face ``tokenizers`` parts, chosen to reproduce Megatron-LM's
(Google BERT's) Python tokenizer step by step rather than using ``BertNormalizer``, which differs
in corners (it also drops private-use / unassigned characters and strips all combining marks):

1. drop NUL, U+FFFD and control characters (Cc, Cf) except tab/newline/return; map whitespace
   (tab, newline, return, Zs) to a space;
2. lower-case only: lower-case (with Python's final-sigma rule), NFD, drop non-spacing marks (Mn);
3. split on whitespace, isolate CJK ideographs and punctuation (ASCII non-alphanumerics and P*);
4. greedy longest-match WordPiece with "##" continuations, [UNK] for words over 200 characters
   (legacy) or 100 (current) or with no match.

Current mode (Megatron-LM's default) builds transformers' BERT tokenizer from the hub names
bert-large-uncased / bert-large-cased with your --vocab-file. On top of the steps above that
means: [PAD], [UNK], [CLS], [SEP] and [MASK] written in the text (exactly so, before any
lower-casing) are those tokens; BertWordPieceCase also adds the 100 sentinels <extra_id_0> ...
<extra_id_99> (new ids after the file's tokens, matched in the text too); words over 100
characters are [UNK]; nothing else is added, bos = [CLS] and eos = eod = [SEP]. Legacy mode
(Google BERT's tokenizer in Megatron-LM) matches nothing in the text, appends [BOS] and [EOS]
(eod = [EOS]) and ``--vocab-extra-ids`` sentinels.
"""
from typing import Dict, List, Optional

from megatron.core.errors import DataError
from megatron.core.tokenizers.base import (
    MegatronTokenizer,
    clean_up_tokenization,
    current_identifiers,
)

# The CJK blocks BERT isolates as single-character words.
_CJK_CLASS = (
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)
# Every ASCII character that is not a letter, digit or space counts as punctuation, as do P*.
_PUNCTUATION_CLASS = r"[\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}\p{P}]"
_MAX_WORD_CHARS = 200  # Google BERT's (legacy)
_MAX_WORD_CHARS_CURRENT = 100  # transformers'
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# megatron-core gives BertWordPieceCase (only) these sentinels, whatever --vocab-extra-ids says.
_CASED_SENTINELS = tuple(f"<extra_id_{i}>" for i in range(100))
# A capital sigma after a cased letter (case-ignorable characters between are skipped) and not
# followed by one: where Python's str.lower() writes a final sigma.
_CASED = r"[\p{Cased}&&\P{Case_Ignorable}]"
_FINAL_SIGMA = _CASED + r"\p{Case_Ignorable}*\KΣ(?!\p{Case_Ignorable}*" + _CASED + ")"


def load_vocab_txt(vocab_file: str) -> Dict[str, int]:
    """One token a line, id = line number; surrounding whitespace stripped (as BERT reads it).

    A repeated token keeps the id of its last line, and the line numbers still count it.
    """
    vocab: Dict[str, int] = {}
    try:
        with open(vocab_file, encoding="utf-8") as f:
            for index, line in enumerate(f):
                vocab[line.strip()] = index
    except UnicodeDecodeError as err:
        raise DataError(f"--vocab-file {vocab_file}: expected a BERT vocab.txt (one token a "
                        f"line), but it is not UTF-8 text ({err})") from err
    return vocab


def build_wordpiece(vocab: Dict[str, int], lower_case: bool,
                    max_word_chars: int = _MAX_WORD_CHARS):
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    steps = [
        normalizers.Replace(Regex(r"[\x{0}\x{FFFD}]|[\p{Cc}\p{Cf}&&[^\t\n\r]]"), ""),
        normalizers.Replace(Regex(r"[\t\n\r\p{Zs}]"), " "),
    ]
    if lower_case:
        steps += [
            # Python's str.lower() writes a capital sigma that ends a word as final sigma
            # (Unicode's Final_Sigma rule; \K keeps the preceding context out of the match).
            normalizers.Replace(Regex(_FINAL_SIGMA), "ς"),
            normalizers.Lowercase(),
            normalizers.NFD(),
            normalizers.Replace(Regex(r"\p{Mn}"), ""),
        ]
    tokenizer = Tokenizer(
        models.WordPiece(
            vocab=vocab,
            unk_token="[UNK]",
            max_input_chars_per_word=max_word_chars,
            continuing_subword_prefix="##",
        )
    )
    tokenizer.normalizer = normalizers.Sequence(steps)
    # A regex rather than BertPreTokenizer: its punctuation table is an older Unicode version
    # than Python's, which Megatron-LM's tokenizer asks.
    isolated = _CJK_CLASS + "|" + _PUNCTUATION_CLASS
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(isolated), behavior="isolated"),
        ]
    )
    return tokenizer


class BertWordPieceTokenizer(MegatronTokenizer):
    """Legacy: Megatron-LM adds [BOS] and [EOS] (eod = [EOS]) and ``vocab_extra_ids`` sentinels
    <extra_id_0>, ... after the file's tokens when the file lacks them. Current: see above."""

    megatron_class_name = "_BertWordPieceTokenizer"

    def __init__(self, vocab_file: str, lower_case: bool = True, vocab_extra_ids: int = 0,
                 legacy: bool = False, use_fast: bool = False, trust_remote_code: bool = False):
        super().__init__(vocab_file, lower_case=lower_case, vocab_extra_ids=vocab_extra_ids)
        self.legacy = legacy
        self._vocab = load_vocab_txt(vocab_file)
        self._inv_vocab = {i: t for t, i in self._vocab.items()}
        missing = [t for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]") if t not in self._vocab]
        if missing:
            raise DataError(
                f"--vocab-file {vocab_file}: expected a BERT vocab.txt with [CLS], [SEP], [PAD] "
                f"and [MASK]; missing {missing}"
            )
        if legacy:
            self._bos = self._add_token("[BOS]")
            self._eos = self._add_token("[EOS]")
            self._sentinels = [f"<extra_id_{i}>" for i in range(vocab_extra_ids)]
        else:
            self._bos, self._eos = self._vocab["[CLS]"], self._vocab["[SEP]"]
            self._sentinels = [] if lower_case else list(_CASED_SENTINELS)
            self._set_identifiers(current_identifiers(
                "BertWordPieceLowerCase" if lower_case else "BertWordPieceCase",
                additional_special_tokens=self._sentinels, vocab_file=vocab_file,
                merges_file=None, use_fast=use_fast, trust_remote_code=trust_remote_code,
                include_special_tokens=False))
        for token in self._sentinels:
            self._add_token(token)
        max_word_chars = _MAX_WORD_CHARS if legacy else _MAX_WORD_CHARS_CURRENT
        self._tokenizer = build_wordpiece(self._vocab, lower_case, max_word_chars)
        if not legacy:  # matched in the raw text, before normalization, as transformers does
            specials = [t for t in _SPECIAL_TOKENS if t in self._vocab] + self._sentinels
            self._tokenizer.add_special_tokens(specials)

    def _add_token(self, token: str) -> int:
        if token not in self._vocab:
            new_id = len(self._vocab)
            self._inv_vocab[new_id] = token
            self._vocab[token] = new_id
        return self._vocab[token]

    def tokenize(self, text: str) -> List[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        from megatron.core.tokenizers.gpt2_bpe import encode_batch_ids

        return encode_batch_ids(self._tokenizer, texts, add_special_tokens=False)

    def detokenize(self, ids: List[int]) -> str:
        tokens = [self._inv_vocab[int(i)] for i in ids]
        return clean_up_tokenization(" ".join(tokens).replace(" ##", "").strip())

    def decode_token_ids(self, ids: List[int]) -> str:
        """Text without [PAD]/[CLS], each word preceded by a space (Megatron-LM's helper)."""
        text = ""
        for token in (self._inv_vocab[int(i)] for i in ids):
            if token in ("[PAD]", "[CLS]"):
                continue
            text += token[2:] if token.startswith("##") else " " + token
        return text

    @property
    def cls(self) -> int:
        return self._vocab["[CLS]"]

    @property
    def sep(self) -> int:
        return self._vocab["[SEP]"]

    @property
    def pad(self) -> int:
        return self._vocab["[PAD]"]

    @property
    def mask(self) -> int:
        return self._vocab["[MASK]"]

    @property
    def bos(self) -> int:
        return self._bos

    @property
    def eos(self) -> int:
        return self._eos

    @property
    def eod(self) -> int:
        return self._eos

    @property
    def additional_special_tokens_ids(self) -> Optional[List[int]]:
        return [self._vocab[t] for t in self._sentinels]
