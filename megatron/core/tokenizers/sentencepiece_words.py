"""Word-cached encoding for SentencePiece BPE models, giving exactly the ids of ``encode``.

SentencePiece encodes a text in two steps: the normalizer rewrites it (character rules, spaces
to U+2581 "▁", a "▁" in front), then BPE merges symbols of the whole normalized string. We
run the model's own normalizer (``normalize``), cut its output into words and look each word
up in a WordCache; unseen words are encoded, all in one call, by a copy of the model whose
normalizer only escapes spaces (identity rules, no "▁" in front, no whitespace removal), so a
word meets exactly the BPE it would have met inside the text. When the model's own normalizer
is that plus the "▁" in front (Llama-2 style), the words are cut from the text directly.

When is BPE over the whole string the same as BPE word by word? A merge joins two adjacent
symbols into a piece of the vocabulary. If no piece has a "▁" after another character (pieces
look like ``▁*[^▁]*``: "▁the", "▁▁▁▁", "ing"), nothing ever joins a character to a following "▁",
so the text falls apart at every "▁" that follows another character, and the merges inside
each part do not depend on the rest (BPE applies them best score first, leftmost first, which
is the same order inside a part whatever surrounds it). Those parts are our words:
``▁*[^▁]+`` (and a trailing ``▁+``). One more rule spans words: ``encode`` joins consecutive
<unk> pieces into one. A word after the first starts with "▁", so when "▁" is a known piece a
word never starts with <unk>, and no <unk> run crosses a word boundary.

So the cached path is used only for BPE models (trainer ``model_type``) that escape spaces,
put "▁" in front (not ``treat_whitespace_as_suffix``), have "▁" as a normal piece, and whose
every piece has that shape; ``split_by_whitespace`` training is what gives a vocabulary that
shape. Otherwise, or where the model proto cannot be read, the plain path is kept. Unigram
models are never cached: their best segmentation is global.
"""
import re
from typing import List, Optional, Sequence

from megatron.core.tokenizers.word_cache import WordCache

SPACE = "\u2581"
WORD_SHAPED_PIECE = re.compile(f"{SPACE}*[^{SPACE}]*")
WORDS_OF_NORMALIZED = re.compile(f"{SPACE}*[^{SPACE}]+|{SPACE}+")
# The same words found in the text itself, for models whose normalizer only turns " " into
# "▁" (and puts one in front): Llama-2-style models, and tools/train_tokenizer.py's.
WORDS_OF_TEXT = re.compile(f"[ {SPACE}]*[^ {SPACE}]+|[ {SPACE}]+")

# Compared with the plain path before a new encoder is used.
PROBE_TEXTS = (
    "", " ", "Hello,  world!\n\tIt's 2024.  ", "naïve café ΟΔΟΣ 中文 😀 \u00a0\u3000x\u2581y ",
    "   leading", "trailing   ", "<unk><s></s>",
)


def why_not_word_cached(model_proto) -> Optional[str]:
    """None when word-by-word BPE is exact for this ``ModelProto``, else the reason."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    trainer, normalizer = model_proto.trainer_spec, model_proto.normalizer_spec
    if trainer.model_type != model_pb2.TrainerSpec.BPE:
        return "not a BPE model"
    if trainer.treat_whitespace_as_suffix:
        return "treat_whitespace_as_suffix"
    if not normalizer.escape_whitespaces:
        return "escape_whitespaces is off"
    piece_types = {p.piece: p.type for p in model_proto.pieces}
    normal = (model_pb2.ModelProto.SentencePiece.NORMAL,
              model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    if piece_types.get(SPACE) not in normal:
        return f"{SPACE!r} is not a normal piece"
    for piece in model_proto.pieces:
        if not WORD_SHAPED_PIECE.fullmatch(piece.piece):
            return f"piece {piece.piece!r} joins a character to a following {SPACE!r}"
    return None


class SentencePieceWordEncoder:
    """``encode_batch(texts, num_threads)``: the ids ``processor.encode(texts)`` gives, found
    word by word. Build it with ``for_processor`` (None when not exact)."""

    def __init__(self, processor, words_processor, spaces_only: bool, dummy_prefix: bool):
        self._processor = processor
        self._words_processor = words_processor
        # With a normalizer that only escapes spaces, words are cut from the text directly;
        # calling the normalizer would cost a tenth of the time.
        self._spaces_only = spaces_only
        self._prefix = " " if dummy_prefix else ""
        self._num_threads = 1
        self._cache = WordCache(self._encode_words)

    @classmethod
    def for_processor(cls, processor) -> Optional["SentencePieceWordEncoder"]:
        import sentencepiece

        try:
            from sentencepiece import sentencepiece_model_pb2 as model_pb2

            model = model_pb2.ModelProto()
            model.ParseFromString(processor.serialized_model_proto())
        except Exception:  # no protobuf, or a proto this version cannot read: plain path
            return None
        if why_not_word_cached(model) is not None or not hasattr(processor, "normalize"):
            return None
        spec = model.normalizer_spec
        spaces_only = (spec.name == "identity" and not spec.precompiled_charsmap
                       and not spec.remove_extra_whitespaces)
        dummy_prefix = spec.add_dummy_prefix
        spec.name = "identity"
        spec.precompiled_charsmap = b""
        spec.normalization_rule_tsv = ""
        spec.add_dummy_prefix = False
        spec.remove_extra_whitespaces = False
        words_processor = sentencepiece.SentencePieceProcessor(
            model_proto=model.SerializeToString())
        encoder = cls(processor, words_processor, spaces_only, dummy_prefix)
        probes = list(PROBE_TEXTS)
        if encoder.encode_batch(probes) != processor.encode(probes, out_type=int):
            return None  # a setting this module does not know about: stay exact
        return encoder

    def __reduce__(self):
        # Pickled (to spawned workers) as the recipe, not as the remembered words.
        return SentencePieceWordEncoder.for_processor, (self._processor,)

    def _encode_words(self, words: List[str]) -> List[List[int]]:
        # Spaces in words cut from the text are escaped by the copy's normalizer.
        return self._words_processor.encode(words, out_type=int, num_threads=self._num_threads)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> List[List[int]]:
        self._num_threads = num_threads
        if self._spaces_only:  # an empty text stays empty: no "▁" in front
            cut, prefix = WORDS_OF_TEXT.findall, self._prefix
            return self._cache.ids_per_text([cut(prefix + text) if text else [] for text in texts])
        normalize, cut = self._processor.normalize, WORDS_OF_NORMALIZED.findall
        try:
            words_per_text = [cut(normalize(text)) for text in texts]
        except (RuntimeError, TypeError, UnicodeError):
            # A text the library cannot take (a lone surrogate): the plain call gives the
            # library's own error for it.
            return self._processor.encode(list(texts), out_type=int, num_threads=num_threads)
        return self._cache.ids_per_text(words_per_text)
