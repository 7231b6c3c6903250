"""Word-cached encoding for byte-level BPE with GPT-2's pre-tokenizer (GPT2BPETokenizer, and
HuggingFaceTokenizer files of that kind), giving exactly the ids of the plain encode.

Hugging Face's ``ByteLevel(use_regex=True)`` pre-tokenizer cuts the text with GPT-2's pattern
and BPE then runs on each piece alone, so the ids of a text are its pieces' ids back to back.
We cut the text in Python the same way (gpt2_split.py), look each piece up in a WordCache, and
encode unseen pieces in one batched call with a copy of the tokenizer that does not cut
(``use_regex=False``: it only maps bytes to GPT-2's characters, which is per piece anyway).

A text takes the plain path instead where the Python cut might differ (gpt2_split.py says
which), or where it contains an added token's text (the library matches those first). Files
with a normalizer, another pre-tokenizer, truncation, padding or a post-processor other than
ByteLevel / TemplateProcessing keep the plain path entirely.
"""
import json
import re
from typing import List, Optional, Sequence, Tuple

from megatron.core.tokenizers.gpt2_split import Gpt2WordSplitter
from megatron.core.tokenizers.word_cache import WordCache

# Texts on which a new encoder is compared with the plain path before it is used.
PROBE_TEXTS = (
    "", " ", "Hello, world! It's 2024; they'll've gone.", "  two  spaces\n\n\tand tabs \r\n",
    "naïve café ΟΔΟΣ 中文 😀 x²½ \u00a0\u3000 end ", "<|endoftext|> <s></s>[CLS]",
)


def _encode_ids(tokenizer, texts: List[str], add_special_tokens: bool) -> List[List[int]]:
    # encode_batch_fast (no offsets) is newer than the oldest tokenizers we accept.
    encode = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch
    return [e.ids for e in encode(texts, add_special_tokens=add_special_tokens)]


def _special_ids_around(post_processor: Optional[dict],
                        special: bool) -> Optional[Tuple[list, list]]:
    """Ids the post-processor puts before and after a single text, or None when it does
    something we do not reproduce (then the plain path is used)."""
    if post_processor is None or not special:
        return [], []
    kind = post_processor.get("type")
    if kind == "ByteLevel":  # offsets only
        return [], []
    if kind == "Sequence":
        before, after = [], []
        for step in post_processor.get("processors", []):
            around = _special_ids_around(step, special)
            if around is None:
                return None
            before, after = around[0] + before, after + around[1]
        return before, after
    if kind == "TemplateProcessing":
        tokens = post_processor.get("special_tokens", {})
        before, after, seen_text = [], [], 0
        for item in post_processor.get("single", []):
            if "Sequence" in item:
                seen_text += 1
            elif "SpecialToken" in item:
                name = item["SpecialToken"]["id"]
                if name not in tokens:
                    return None
                (after if seen_text else before).extend(tokens[name]["ids"])
            else:
                return None
        return (before, after) if seen_text == 1 else None
    return None  # Roberta/Bert processors and others: plain path


def _is_gpt2_byte_level_bpe(spec: dict) -> bool:
    pre = spec.get("pre_tokenizer") or {}
    model = spec.get("model") or {}
    return (
        spec.get("normalizer") is None
        and spec.get("truncation") is None
        and spec.get("padding") is None
        and pre.get("type") == "ByteLevel"
        and not pre.get("add_prefix_space", True)
        and pre.get("use_regex", True)
        and model.get("type") == "BPE"
        and model.get("dropout") is None
    )


class ByteLevelWordEncoder:
    """``encode_batch(texts)``: the ids ``tokenizer.encode_batch(texts, add_special_tokens)``
    gives, found word by word. Build it with ``for_tokenizer`` (None when not exact)."""

    def __init__(self, tokenizer, words_tokenizer, add_special_tokens: bool,
                 around: Tuple[list, list], added_texts: Sequence[str]):
        self._tokenizer = tokenizer
        self._words_tokenizer = words_tokenizer
        self._add_special_tokens = add_special_tokens
        self._before, self._after = around
        self._splitter = Gpt2WordSplitter()
        self._cache = WordCache(self._encode_words)
        self._find_added = (re.compile("|".join(map(re.escape, added_texts))).search
                            if added_texts else None)

    @classmethod
    def for_tokenizer(cls, tokenizer, add_special_tokens: bool) -> Optional["ByteLevelWordEncoder"]:
        from tokenizers import Tokenizer, pre_tokenizers

        text = tokenizer.to_str()
        try:
            spec = json.loads(text)
            if not _is_gpt2_byte_level_bpe(spec):
                return None
            around = _special_ids_around(spec.get("post_processor"), add_special_tokens)
            added = [t["content"] for t in spec.get("added_tokens") or [] if t.get("content")]
        except (KeyError, TypeError, AttributeError, ValueError):
            return None  # a tokenizer.json layout we do not know: plain path
        if around is None:
            return None
        words_tokenizer = Tokenizer.from_str(text)
        words_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                 use_regex=False)
        words_tokenizer.post_processor = None
        encoder = cls(tokenizer, words_tokenizer, add_special_tokens, around, added)
        # A last guard against a setting this module does not know about.
        if encoder.encode_batch(list(PROBE_TEXTS)) != encoder._encode_plain(list(PROBE_TEXTS)):
            return None
        return encoder

    def __reduce__(self):
        # Pickled (to spawned workers) as the recipe, not as the remembered words.
        return ByteLevelWordEncoder.for_tokenizer, (self._tokenizer, self._add_special_tokens)

    def _encode_words(self, words: List[str]) -> List[List[int]]:
        return _encode_ids(self._words_tokenizer, words, add_special_tokens=False)

    def _encode_plain(self, texts: List[str]) -> List[List[int]]:
        return _encode_ids(self._tokenizer, texts, self._add_special_tokens)

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        words_per_text, plain = [], []
        for i, text in enumerate(texts):
            words = None
            if self._find_added is None or self._find_added(text) is None:
                words = self._splitter.split(text)
            if words is None:
                plain.append(i)
                words = []
            words_per_text.append(words)
        results = self._cache.ids_per_text(words_per_text)
        if self._before or self._after:
            results = [self._before + ids + self._after for ids in results]
        if plain:
            for i, ids in zip(plain, self._encode_plain([texts[i] for i in plain])):
                results[i] = ids
        return results
