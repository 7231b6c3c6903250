"""The worker side: a chunk of jsonl lines -> token arrays ready to append to the datasets.

Each worker gets a whole chunk (about a megabyte of text), tokenizes all its texts in one
batched call and sends back flat numpy arrays; nothing travels per document or per token.

Megatron's rules, which decide the bytes on disk:
  * a field becomes one sequence, or one per sentence with --split-sentences;
  * sequences that tokenize to nothing are dropped;
  * --append-eod adds `tokenizer.eod` to the last sequence of a non-empty document;
  * a document with no tokens left is still a document (an empty one).
"""

import itertools
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy

from megatron.core.errors import DataError
from megatron.preprocess.documents import BadLine, parse_chunk
from megatron.preprocess.inputs import LineChunk
from megatron.preprocess.sentences import maybe_split  # no NLTK import until it splits


@dataclass
class EncodedField:
    tokens: numpy.ndarray  # every token of every document, back to back, in the dataset dtype
    sequence_lengths: numpy.ndarray  # int32, one per sequence
    sequences_per_document: numpy.ndarray  # int64, one per document (0: empty document)


@dataclass
class EncodedChunk:
    fields: Dict[str, EncodedField]
    documents: int
    bad_lines: List[BadLine]
    blank_lines: int
    input_bytes: int


@dataclass
class EncoderSetup:
    """What a worker needs; sent to it once, when the pool starts."""

    tokenizer: object  # a tokenizer, or (where workers are spawned) a picklable factory of one
    json_keys: Sequence[str]
    append_eod: bool
    dtype: type
    splitter: Optional[object] = None  # punkt splitter when --split-sentences


class ChunkEncoder:
    def __init__(self, setup: EncoderSetup):
        tokenizer = setup.tokenizer
        self.tokenizer = tokenizer if hasattr(tokenizer, "tokenize") else tokenizer()
        self.json_keys = list(setup.json_keys)
        self.append_eod = setup.append_eod
        self.eod = self.tokenizer.eod if setup.append_eod else None
        self.dtype = setup.dtype
        self.splitter = setup.splitter
        batch = getattr(self.tokenizer, "tokenize_batch", None)
        self._tokenize_batch = batch or (lambda texts: [self.tokenizer.tokenize(t) for t in texts])

    def __call__(self, chunk: LineChunk) -> EncodedChunk:
        parsed = parse_chunk(chunk, self.json_keys)
        fields = {}
        for key, values in parsed.fields.items():
            try:
                fields[key] = self._encode_field(values)
            except Exception as err:
                raise self._locate_failure(chunk.path, key, values, parsed.line_numbers) from err
        documents = len(parsed.fields[self.json_keys[0]])
        return EncodedChunk(fields, documents, parsed.bad_lines, parsed.blank_lines, parsed.input_bytes)

    def _locate_failure(self, path, key, values, line_numbers) -> Exception:
        """The batch failed: find the first document that fails alone, to name its line."""
        for value, number in zip(values, line_numbers):
            try:
                self._encode_field([value])
            except Exception as err:
                return DataError(f"{path}:{number}: cannot tokenize key {key!r}: {err}")
        return RuntimeError(f"{path}: tokenizing key {key!r} failed for a batch of lines "
                            f"{line_numbers[0]}-{line_numbers[-1]} but for none of them alone")

    def _encode_field(self, values: list) -> EncodedField:
        texts_per_document = [maybe_split(self.splitter, value) for value in values]
        flat = [text for texts in texts_per_document for text in texts]
        ids = self._tokenize_batch(flat) if flat else []

        pieces = []  # token lists in output order, EODs included
        sequence_lengths = []
        per_document = numpy.zeros(len(values), dtype=numpy.int64)
        eod = [self.eod]
        position = 0
        for doc, texts in enumerate(texts_per_document):
            kept = 0
            for sequence in ids[position : position + len(texts)]:
                if len(sequence):
                    pieces.append(sequence)
                    sequence_lengths.append(len(sequence))
                    kept += 1
            position += len(texts)
            if kept and self.append_eod:
                pieces.append(eod)
                sequence_lengths[-1] += 1
            per_document[doc] = kept
        total = sum(sequence_lengths)
        try:
            tokens = numpy.fromiter(
                itertools.chain.from_iterable(pieces), dtype=self.dtype, count=total
            )
        except OverflowError as err:
            raise DataError(
                f"the tokenizer produced an id that does not fit the dataset dtype "
                f"{numpy.dtype(self.dtype).name} ({err}); its vocab_size "
                f"({self.tokenizer.vocab_size}) is smaller than its largest id"
            ) from err
        return EncodedField(tokens, numpy.array(sequence_lengths, dtype=numpy.int32), per_document)


_worker_encoder: Optional[ChunkEncoder] = None


def start_worker(setup: EncoderSetup) -> None:
    """Pool initializer: one tokenizer per worker, single-threaded unless the user set
    TOKENIZERS_PARALLELISM: --workers is the number of cores that tokenize (docs/preprocessing.md)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    global _worker_encoder
    _worker_encoder = ChunkEncoder(setup)
    if hasattr(_worker_encoder.tokenizer, "num_threads"):  # sentencepiece's batched encode
        _worker_encoder.tokenizer.num_threads = 1


def encode_in_worker(chunk: LineChunk) -> EncodedChunk:
    return _worker_encoder(chunk)
