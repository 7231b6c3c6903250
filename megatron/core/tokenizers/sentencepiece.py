"""SentencePiece families over one ``.model`` file (``--tokenizer-model``).

Current mode (Megatron-LM's default, megatron-core's SentencePieceTokenizer): all three types are
the plain model. ``tokenize`` is sentencepiece's ``encode``, so a control piece written in the
text (``<s>``, ``</s>``) is ordinary text and only user-defined pieces are matched, as the
library does; nothing is added to the vocabulary (``--vocab-extra-ids`` is ignored, as there);
eod = eos = the model's ``eos_id``, bos and pad its ``bos_id`` / ``pad_id`` (-1 when it has
none), and there is no cls, sep or mask.

Legacy mode (--legacy-tokenizer, Megatron-LM's older classes):

* ``SentencePieceTokenizer``: adds <CLS>, <SEP>, <EOD>, <MASK> and the model's pad/bos/eos pieces
  as special tokens (new ids after the model's pieces when the model lacks them), plus
  ``--vocab-extra-ids`` sentinels <extra_id_0>, ...; any of these written literally in the text
  is encoded as its id, and eod is <EOD>.
* ``GPTSentencePieceTokenizer``: the plain model; eod = eos, nothing added.
* ``Llama2Tokenizer``: the plain model with bos prepended to every text; eod = eos.
"""
import re
from typing import Dict, List, Optional

from megatron.core.errors import DataError
from megatron.core.tokenizers.base import MegatronTokenizer, current_identifiers


def _load_processor(model_file: str):
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=model_file)
    except (OSError, RuntimeError, TypeError) as err:
        raise DataError(
            f"--tokenizer-model {model_file}: expected a SentencePiece .model file, could not "
            f"load it ({err})"
        ) from err


class _SentencePieceBase(MegatronTokenizer):
    """The model file, its piece table as Megatron-LM builds it, and the plain encode path;
    in current mode also the whole behaviour of all three types."""

    def __init__(self, model_file: str, vocab_extra_ids: int = 0, legacy: bool = False):
        super().__init__(model_file, vocab_extra_ids=vocab_extra_ids)
        self.legacy = legacy
        if not legacy:
            self._set_identifiers(current_identifiers(model_file, legacy=False,
                                                      special_tokens=None))
        self._sp = _load_processor(model_file)
        # Threads for batched encodes; -1 lets sentencepiece use every core. Multi-process
        # callers (one worker per core) should set 1.
        self.num_threads = -1
        self._word_encoder = None  # made on first use, if exact for this tokenizer
        self._word_encoder_tried = False
        self._vocab: Dict[str, int] = {}
        self._inv_vocab: Dict[int, str] = {}
        pieces = self._sp.id_to_piece(list(range(self._sp.get_piece_size())))
        for i, piece in enumerate(pieces):
            self._inv_vocab[i] = piece
            self._vocab[piece] = i  # a repeated piece keeps its last id, as in Megatron-LM

    def _encode_plain(self, texts: List[str]) -> List[List[int]]:
        """What ``encode`` gives each text; for BPE models whose pieces allow it, found word by
        word through a cache (sentencepiece_words.py), with the same ids."""
        if not texts:
            return []
        if not self._word_encoder_tried:  # built on first use: training never needs it
            self._word_encoder_tried = True
            from megatron.core.tokenizers.sentencepiece_words import SentencePieceWordEncoder

            self._word_encoder = SentencePieceWordEncoder.for_processor(self._sp)
        if self._word_encoder is not None:
            return self._word_encoder.encode_batch(texts, num_threads=self.num_threads)
        return self._sp.encode(texts, out_type=int, num_threads=self.num_threads)

    @property
    def decoder(self) -> Dict[int, str]:
        return self._inv_vocab

    @property
    def encoder(self) -> Dict[str, int]:
        return self._vocab


    # ---- the plain model (current mode, and GPTSentencePieceTokenizer in both modes) ----------

    def tokenize(self, text: str) -> List[int]:
        return self._sp.encode(text, out_type=int)

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        return self._encode_plain(list(texts))

    def detokenize(self, ids: List[int]) -> str:
        return self._sp.decode_ids([int(i) for i in ids])

    def offsets(self, ids: List[int], text: str) -> List[int]:
        return [p.begin for p in self._sp.decode_ids_as_immutable_proto(ids).pieces]

    # megatron-core has no cls/sep/mask for SentencePiece (it raises); the legacy plain classes
    # answer -1.

    @property
    def cls(self) -> int:
        return self._missing("cls") if not self.legacy else -1

    @property
    def sep(self) -> int:
        return self._missing("sep") if not self.legacy else -1

    @property
    def mask(self) -> int:
        return self._missing("mask") if not self.legacy else -1

    @property
    def pad(self) -> int:
        return self._sp.pad_id()

    @property
    def bos(self) -> int:
        return self._sp.bos_id()

    @property
    def eod(self) -> int:
        return self._sp.eos_id()

    @property
    def eos(self) -> int:
        return self._sp.eos_id()

    @property
    def additional_special_tokens_ids(self) -> Optional[List[int]]:
        return None


class SentencePieceTokenizer(_SentencePieceBase):
    megatron_class_name = "_SentencePieceTokenizer"

    def __init__(self, model_file: str, vocab_extra_ids: int = 0, legacy: bool = False):
        super().__init__(model_file, vocab_extra_ids=vocab_extra_ids, legacy=legacy)
        self._special: Dict[str, int] = {}  # insertion order decides ties, as in Megatron-LM
        self._inv_special: Dict[int, str] = {}
        self._sentinels: List[str] = []
        self._special_pattern = None
        if not legacy:
            return  # the plain model: nothing added, nothing matched in the text
        self._cls = self._add_special("<CLS>")
        self._sep = self._add_special("<SEP>")
        self._eod = self._add_special("<EOD>")
        self._mask = self._add_special("<MASK>")
        self._pad = self._add_special(self._model_piece(self._sp.pad_id(), "<PAD>"))
        self._bos = self._add_special(self._model_piece(self._sp.bos_id(), "<BOS>"))
        self._eos = self._add_special(self._model_piece(self._sp.eos_id(), "<EOS>"))
        self._sentinels = [f"<extra_id_{i}>" for i in range(vocab_extra_ids)]
        for token in self._sentinels:
            self._add_special(token)
        # Leftmost match, and among tokens starting at the same place the first added one:
        # the order in which Megatron-LM's scan picks them.
        self._special_pattern = re.compile("|".join(re.escape(t) for t in self._special))

    def _model_piece(self, piece_id: int, fallback: str) -> str:
        if 0 <= piece_id < self._sp.get_piece_size():
            return self._sp.id_to_piece(piece_id)
        return fallback  # the model has no such piece (id -1)

    def _add_special(self, token: str) -> int:
        if token not in self._vocab:
            new_id = len(self._vocab)
            self._vocab[token] = new_id
            self._inv_vocab[new_id] = token
        self._special[token] = self._vocab[token]
        self._inv_special[self._vocab[token]] = token
        return self._vocab[token]

    def _split(self, text: str):
        """Plain-text pieces and the special ids between them: [str, id, str, id, ..., str]."""
        if self._special_pattern is None:
            return [text]
        parts, start = [], 0
        for match in self._special_pattern.finditer(text):
            parts.append(text[start:match.start()])
            parts.append(self._special[match.group()])
            start = match.end()
        parts.append(text[start:])
        return parts

    def tokenize(self, text: str) -> List[int]:
        ids: List[int] = []
        for part in self._split(text):
            if isinstance(part, str):
                ids.extend(self._sp.encode(part, out_type=int))
            else:
                ids.append(part)
        return ids

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        if self._special_pattern is None:
            return self._encode_plain(list(texts))
        split_texts = [self._split(text) for text in texts]
        # One batched call for every plain piece of every text, then reassemble.
        plain = [p for parts in split_texts for p in parts if isinstance(p, str)]
        encoded = iter(self._encode_plain(plain))
        results = []
        for parts in split_texts:
            ids: List[int] = []
            for part in parts:
                if isinstance(part, str):
                    ids.extend(next(encoded))
                else:
                    ids.append(part)
            results.append(ids)
        return results

    def detokenize(self, ids: List[int]) -> str:
        # Megatron-LM writes special tokens by name, each followed and preceded by a space.
        ids = [int(i) for i in ids]
        text, last = "", 0
        for i, token_id in enumerate(ids):
            if token_id in self._inv_special:
                text += self._sp.decode_ids(ids[last:i]) + " "
                text += self._inv_special[token_id] + " "
                last = i + 1
        return text + self._sp.decode_ids(ids[last:])

    # The added tokens in legacy mode, the model's own ids (base class) in current mode.

    @property
    def cls(self) -> int:
        return self._cls if self.legacy else super().cls

    @property
    def sep(self) -> int:
        return self._sep if self.legacy else super().sep

    @property
    def pad(self) -> int:
        return self._pad if self.legacy else super().pad

    @property
    def bos(self) -> int:
        return self._bos if self.legacy else super().bos

    @property
    def eod(self) -> int:
        return self._eod if self.legacy else super().eod

    @property
    def eos(self) -> int:
        return self._eos if self.legacy else super().eos

    @property
    def mask(self) -> int:
        return self._mask if self.legacy else super().mask

    @property
    def additional_special_tokens_ids(self) -> Optional[List[int]]:
        return [self._vocab[t] for t in self._sentinels] if self.legacy else None


class GPTSentencePieceTokenizer(_SentencePieceBase):
    """The plain model in both modes."""

    megatron_class_name = "_GPTSentencePieceTokenizer"

    def __init__(self, model_file: str, legacy: bool = False):
        super().__init__(model_file, vocab_extra_ids=0, legacy=legacy)


class Llama2Tokenizer(GPTSentencePieceTokenizer):
    """Legacy mode puts bos in front of every text (Megatron-LM's text-completion default) and
    eos after none; current mode is the plain model."""

    megatron_class_name = "_Llama2Tokenizer"

    def tokenize(self, text: str) -> List[int]:
        ids = self._sp.encode(text, out_type=int)
        return [self._sp.bos_id()] + ids if self.legacy else ids

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        encoded = self._encode_plain(list(texts))
        if not self.legacy:
            return encoded
        bos = self._sp.bos_id()
        return [[bos] + ids for ids in encoded]
