"""Preprocessing end to end: read chunks, tokenize them in a worker pool, write them in order.

The main process reads the input in chunks of whole lines, keeps a bounded number of chunks
in flight in the pool (so memory stays flat whatever the input size), and appends the results
to one IndexedDatasetBuilder per json key in input order. Outputs carry temporary names until
every chunk is written; any failure removes them, so a final-named dataset is always complete.
Temporary outputs that a killed run left behind (its pid dead on this host) are removed at start.

Errors caused by the input or the flags are megatron.core.errors types (exit status 2 in the
command): ConfigError for a flag, MissingFileError for an input that is not there, DataError
(PreprocessError) for content that cannot be used.
"""

import multiprocessing
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

from megatron.core.datasets.indexed_dataset import DType, get_bin_path, get_idx_path
from megatron.core.datasets.indexed_dataset_builder import IndexedDatasetBuilder
from megatron.core.errors import ConfigError, DataError
from megatron.preprocess.encoding import (
    EncodedChunk,
    EncoderSetup,
    encode_in_worker,
    start_worker,
)
from megatron.preprocess.inputs import ChunkReader, find_input_files
from megatron.preprocess.outputs import prepare_output_directory
from megatron.preprocess.progress import ProgressReporter

DEFAULT_CHUNK_BYTES = 1 << 20
# Punkt is trained on this much of the input when NLTK has no data for --lang.
PUNKT_TRAINING_CHARS = 4_000_000
_BAD_LINES_SHOWN = 20


class PreprocessError(DataError):
    """Input that cannot be used, reported with what to do; nothing final-named was written."""


@dataclass
class PreprocessConfig:
    input: str
    output_prefix: str
    json_keys: Sequence[str] = ("text",)
    split_sentences: bool = False
    keep_newlines: bool = False
    lang: str = "english"
    append_eod: bool = False
    workers: int = 1
    partitions: int = 1
    keep_sequential_samples: bool = False
    log_interval: int = 1000
    skip_bad_lines: bool = False
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    allow_empty: bool = False  # ours: write a valid empty dataset for an input without documents


@dataclass
class PreprocessSummary:
    documents: int = 0
    sequences: int = 0
    tokens: int = 0
    bad_lines: int = 0
    blank_lines: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    outputs: Dict[str, str] = field(default_factory=dict)  # json key -> dataset prefix

    def describe(self) -> str:
        seconds = max(self.seconds, 1e-9)
        lines = [
            f"Done: {self.documents} documents, {self.sequences} sequences, {self.tokens} tokens "
            f"from {self.input_bytes / 2**20:.1f} MB in {self.seconds:.1f} s "
            f"({self.input_bytes / seconds / 2**20:.2f} MB/s, {self.tokens / seconds:.0f} tokens/s)",
        ]
        if self.bad_lines:
            lines.append(f"Skipped {self.bad_lines} bad lines (--skip-bad-lines)")
        if self.blank_lines:
            lines.append(f"Skipped {self.blank_lines} blank lines")
        lines.extend(f"Wrote {prefix}.bin/.idx (key {key!r})" for key, prefix in self.outputs.items())
        return "\n".join(lines)


def output_prefixes(config: PreprocessConfig) -> Dict[str, str]:
    """Megatron's output names: {output_prefix}_{key}_{document|sentence}."""
    level = "sentence" if config.split_sentences else "document"
    return {key: f"{config.output_prefix}_{key}_{level}" for key in config.json_keys}


def _check(config: PreprocessConfig) -> None:
    if config.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {config.workers}")
    if config.partitions < 1:
        raise ConfigError(f"--partitions must be at least 1, got {config.partitions}")
    if config.workers % config.partitions:
        raise ConfigError(
            f"--workers {config.workers} is not divisible by --partitions {config.partitions} "
            "(Megatron gives each partition workers/partitions processes); change one of them"
        )
    if not config.json_keys:
        raise ConfigError("--json-keys needs at least one key")
    if config.keep_newlines and not config.split_sentences:
        raise ConfigError("--keep-newlines only applies with --split-sentences; add it or drop it")
    if config.chunk_bytes < 1:
        raise ConfigError(f"--chunk-bytes must be at least 1, got {config.chunk_bytes}")
    if config.log_interval < 1:
        raise ConfigError(f"--log-interval must be at least 1, got {config.log_interval}")


def _no_documents(config: PreprocessConfig, files: List[str], summary) -> DataError:
    names = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    what = "holds no document"
    if summary.bad_lines:
        what += f" (all {summary.bad_lines} non-blank lines were bad and skipped)"
    elif summary.blank_lines:
        what += f" (only {summary.blank_lines} blank lines)"
    else:
        what += " (it is empty)"
    return PreprocessError(
        f"--input {names} {what}: nothing to tokenize. Check the path, or pass --allow-empty to "
        "write an empty dataset anyway. Nothing was written."
    )


def _pool_context():
    # fork: workers inherit the tokenizer already built here instead of loading it again.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _training_texts(config: PreprocessConfig, files: List[str]):
    from megatron.preprocess.documents import parse_chunk
    from megatron.preprocess.sentences import sample_texts

    def values():
        for chunk in ChunkReader(files, 1, True, DEFAULT_CHUNK_BYTES):
            parsed = parse_chunk(chunk, config.json_keys)
            for key in config.json_keys:
                yield from parsed.fields[key]

    return lambda: sample_texts(values(), PUNKT_TRAINING_CHARS)


def preprocess(
    config: PreprocessConfig,
    tokenizer_factory: Callable[[], object],
    log=lambda message: print(message, file=sys.stderr, flush=True),
) -> PreprocessSummary:
    """Tokenize `config.input` into Megatron datasets; returns what was done.

    `tokenizer_factory()` builds the tokenizer (tokenize/tokenize_batch, eod, vocab_size). Where
    workers are spawned rather than forked it must be picklable.
    """
    _check(config)
    start = time.perf_counter()
    files = find_input_files(config.input)
    prefixes = output_prefixes(config)
    for prefix in prefixes.values():
        prepare_output_directory(prefix, log)
    tokenizer = tokenizer_factory()
    dtype = DType.optimal_dtype(tokenizer.vocab_size)
    splitter = None
    if config.split_sentences:
        from megatron.preprocess.sentences import build_sentence_splitter

        try:
            splitter = build_sentence_splitter(
                config.lang, config.keep_newlines, _training_texts(config, files), log
            )
        except RuntimeError as err:  # NLTK missing or unusable: the flag cannot work here
            raise ConfigError(str(err)) from None
    context = _pool_context()
    setup = EncoderSetup(
        tokenizer if context.get_start_method() == "fork" else tokenizer_factory,
        list(config.json_keys),
        config.append_eod,
        dtype,
        splitter,
    )
    reader = ChunkReader(files, config.partitions, config.keep_sequential_samples, config.chunk_bytes)
    builders = {}
    summary = PreprocessSummary(outputs=dict(prefixes))
    progress = ProgressReporter(config.log_interval)

    def write(result: EncodedChunk, read_fraction: float) -> None:
        for bad in result.bad_lines:
            if not config.skip_bad_lines:
                raise PreprocessError(
                    f"{bad}; fix or remove that line, or pass --skip-bad-lines to skip such "
                    "lines (they are counted in the summary). Nothing was written."
                )
            if summary.bad_lines < _BAD_LINES_SHOWN:
                log(f"skipping bad line {bad}")
            summary.bad_lines += 1
        for key, encoded in result.fields.items():
            builders[key].add_document_batch(
                encoded.tokens, encoded.sequence_lengths, encoded.sequences_per_document
            )
        first = result.fields[config.json_keys[0]]
        summary.documents += result.documents
        summary.sequences += len(first.sequence_lengths)
        summary.tokens += sum(len(f.tokens) for f in result.fields.values())
        summary.blank_lines += result.blank_lines
        summary.input_bytes += result.input_bytes
        progress.update(summary.documents, summary.input_bytes, read_fraction)

    try:
        for key, prefix in prefixes.items():
            builders[key] = IndexedDatasetBuilder(get_bin_path(prefix), dtype=dtype)
        with context.Pool(config.workers, initializer=start_worker, initargs=(setup,)) as pool:
            in_flight = deque()
            limit = 2 * config.workers + 1  # enough to keep every worker busy, no more
            for chunk in reader:
                # How far the input had been read when this chunk left: its progress point.
                fraction = reader.consumed_bytes / max(reader.total_bytes, 1)
                in_flight.append((pool.apply_async(encode_in_worker, (chunk,)), fraction))
                while len(in_flight) >= limit:
                    result, fraction = in_flight.popleft()
                    write(result.get(), fraction)
            while in_flight:
                result, fraction = in_flight.popleft()
                write(result.get(), fraction)
        if summary.documents == 0 and not config.allow_empty:
            raise _no_documents(config, files, summary)
        for key, builder in builders.items():
            builder.finalize(get_idx_path(prefixes[key]))
    except BaseException:
        for builder in builders.values():
            builder.abort()
        raise
    if summary.bad_lines > _BAD_LINES_SHOWN:
        log(f"... and {summary.bad_lines - _BAD_LINES_SHOWN} more bad lines")
    summary.seconds = time.perf_counter() - start
    return summary

