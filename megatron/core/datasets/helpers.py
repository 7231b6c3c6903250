"""Index builders with the exact results of Megatron-LM's C++ helpers (helpers.cpp), in numpy.

* `build_sample_idx`: where each GPT sample starts, as (position in the document index, token
  offset). Sample k always starts at token k * sequence_length of the flattened, shuffled document
  stream, so a prefix sum and one `searchsorted` find every row at once.
* `build_blending_indices` / `build_exhaustive_blending_indices`: Megatron's greedy blend, which
  at step s picks the dataset whose share lags most (max of weight * max(s, 1) - count). Each step
  depends on the last, so the stream is cut into chunks simulated side by side (one numpy step
  advances every chunk). A chunk's starting counts are guessed from the weights; the guess is then
  checked against the counts the previous chunk really ends with, and wrong chunks are re-run from
  there. The greedy forgets its starting point within a few steps, so one re-run nearly always
  suffices, and the final check makes the result exact either way.

Floating point follows the C++ code operation by operation (a product, then a difference, in
float64; the first maximum wins ties), so the results are identical, not merely close.
"""

from typing import Callable, Optional

import numpy

_INT32_MAX = numpy.iinfo(numpy.int32).max
# Work per simulated step: about this many (chunk, dataset) cells.
_CELLS_PER_STEP = 1 << 17
_MIN_CHUNK = 256
_SAMPLES_PER_CHUNK = 1 << 22


def _num_samples(num_epochs, tokens_per_epoch, seq_length, drop_last_partial_sequence, extra):
    available = int(num_epochs) * int(tokens_per_epoch) - extra
    if drop_last_partial_sequence:
        return available // seq_length
    # helpers.cpp divides in single precision before rounding up; so do we.
    return int(numpy.ceil(numpy.float32(available) / numpy.float32(seq_length)))


def build_sample_idx(
    sizes: numpy.ndarray,
    document_indices: numpy.ndarray,
    sequence_length: int,
    num_epochs: int,
    tokens_per_epoch: int,
    drop_last_partial_sequence: bool = True,
    add_extra_token_to_sequence: bool = True,
    progress: Optional[Callable[[int], None]] = None,
) -> numpy.ndarray:
    """The [num_samples + 1, 2] sample index of a GPTDataset (int32, or int64 when needed).
    `progress(n)` is called after each chunk of n samples."""
    if sequence_length <= 1:
        raise ValueError(f"sequence_length must be > 1, got {sequence_length}")
    if num_epochs <= 0 or tokens_per_epoch <= 1:
        raise ValueError(
            f"need num_epochs > 0 and tokens_per_epoch > 1, got {num_epochs} and "
            f"{tokens_per_epoch}: the split has (almost) no tokens"
        )
    extra = 1 if add_extra_token_to_sequence else 0
    document_indices = numpy.asarray(document_indices)
    sizes = numpy.asarray(sizes)
    num_docs = document_indices.shape[0]
    largest = max(num_docs, int(sizes.max()) if sizes.size else 0)
    dtype = numpy.int32 if largest <= _INT32_MAX else numpy.int64
    num_samples = _num_samples(
        num_epochs, tokens_per_epoch, sequence_length, drop_last_partial_sequence, extra
    )

    # ends[k] = tokens in the first k + 1 documents of the stream.
    stream_sizes = sizes[document_indices]
    ends = numpy.cumsum(stream_sizes, dtype=numpy.int64)
    total_tokens = int(ends[-1]) if num_docs else 0

    sample_idx = numpy.empty((num_samples + 1, 2), dtype=dtype)
    sample_idx[0] = (0, 0)
    rows = sample_idx[1:]
    # Sample k ends on the token at k * L (shared with the next sample) when it reads L + 1
    # tokens, or just after the token at k * L - 1 when it reads L. Chunks of samples keep the
    # temporaries small and let a progress line move; the result does not depend on them.
    for begin in range(0, num_samples, _SAMPLES_PER_CHUNK):
        end = min(begin + _SAMPLES_PER_CHUNK, num_samples)
        last_token = numpy.arange(
            (begin + 1) * sequence_length, (end + 1) * sequence_length, sequence_length,
            dtype=numpy.int64,
        )
        if not extra:
            last_token -= 1
        in_range = int(numpy.searchsorted(last_token, total_tokens, side="left"))
        last_token = last_token[:in_range]
        # The document holding a token: the first whose end lies beyond it (skips empty ones).
        doc_position = numpy.searchsorted(ends, last_token, side="right")
        # Offset in that document = token - (its end - its size), + 1 when the sample reads L.
        offsets = last_token
        offsets -= ends[doc_position]
        offsets += stream_sizes[doc_position]
        if not extra:
            offsets += 1
        rows[begin : begin + in_range, 0] = doc_position
        rows[begin : begin + in_range, 1] = offsets
        if begin + in_range < end:
            # Only without drop-last: the stream runs out, and C++ pins the row to the last document.
            last_doc = num_docs - 1
            rows[begin + in_range : end, 0] = last_doc
            rows[begin + in_range : end, 1] = int(stream_sizes[last_doc]) - extra
        if progress is not None:
            progress(end - begin)
    return sample_idx


def build_sample_idx_int32(*args) -> numpy.ndarray:
    """Name of the C++ entry point; the dtype is chosen from the inputs, as in helpers.py."""
    return build_sample_idx(*args)


build_sample_idx_int64 = build_sample_idx_int32


def _initial_counts(weights, starts):
    """Guess of each dataset's count at the given steps: its quota, rounded so counts sum up."""
    quota = numpy.outer(starts.astype(numpy.float64), weights)
    counts = numpy.floor(quota)
    missing = starts - counts.sum(axis=1).astype(numpy.int64)
    # The largest remainders round up, as the greedy tends to have served them already.
    order = numpy.argsort(-(quota - counts), axis=1, kind="stable")
    ranks = numpy.empty_like(order)
    numpy.put_along_axis(ranks, order, numpy.arange(weights.shape[0])[None, :], axis=1)
    counts += ranks < missing[:, None]
    counts[0] = 0
    return counts


def _simulate(weights, caps, counts, starts, lengths, dataset_index, dataset_sample_index,
              progress=None):
    """Run the greedy for each chunk from its starting counts; returns the final counts.

    All chunks have the same length except possibly the last one, which is shorter.
    """
    counts = counts.copy()
    num_chunks, num_datasets = counts.shape
    flat = counts.reshape(-1)
    row_offsets = numpy.arange(num_chunks) * num_datasets
    live = counts
    for step in range(int(lengths.max())):
        if step == lengths[-1] and step < lengths[0]:
            # The shorter last chunk is done; the others go on (a view: no copy per step).
            live, starts, row_offsets = counts[:-1], starts[:-1], row_offsets[:-1]
        position = starts + step
        error = numpy.maximum(position, 1).astype(numpy.float64)[:, None] * weights[None, :]
        error -= live
        if caps is not None:
            # Exhaustive blending drops a dataset once it has given all its samples.
            error[live >= caps[None, :]] = -numpy.inf
        choice = numpy.argmax(error, axis=1)
        dataset_index[position] = choice
        cells = row_offsets + choice
        dataset_sample_index[position] = flat[cells]
        flat[cells] += 1
        if progress is not None:
            progress(len(position))
    return counts


def _blend(weights, caps, size, dataset_index, dataset_sample_index, progress=None):
    weights = numpy.asarray(weights, dtype=numpy.float64)
    num_datasets = weights.shape[0]
    if size <= 0:
        return
    num_chunks = max(1, min(size // _MIN_CHUNK, _CELLS_PER_STEP // max(num_datasets, 1)))
    chunk = -(-size // num_chunks)
    starts = numpy.arange(0, size, chunk, dtype=numpy.int64)
    lengths = numpy.minimum(chunk, size - starts)
    start_counts = _initial_counts(weights, starts)
    if caps is not None:
        start_counts = numpy.minimum(start_counts, caps[None, :])

    todo = numpy.arange(len(starts))
    end_counts = numpy.empty_like(start_counts)
    while todo.size:
        end_counts[todo] = _simulate(
            weights,
            caps,
            start_counts[todo],
            starts[todo],
            lengths[todo],
            dataset_index,
            dataset_sample_index,
            progress,
        )
        # A chunk is right when it starts from where the chunk before it really ends.
        wrong = numpy.nonzero(numpy.any(start_counts[1:] != end_counts[:-1], axis=1))[0] + 1
        start_counts[wrong] = end_counts[wrong - 1]
        todo = wrong


def build_blending_indices(
    dataset_index: numpy.ndarray,
    dataset_sample_index: numpy.ndarray,
    weights,
    num_datasets: int,
    size: int,
    verbose: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Fill dataset_index (int16) and dataset_sample_index (int64) for a weighted blend.
    `progress(n)` is called as samples are placed (re-checked chunks count again)."""
    weights = numpy.asarray(weights, dtype=numpy.float64)
    if weights.shape != (num_datasets,):
        raise ValueError(f"expected {num_datasets} blend weights, got {weights.shape[0]}")
    _check_outputs(dataset_index, dataset_sample_index, size)
    _blend(weights, None, int(size), dataset_index, dataset_sample_index, progress)
    if verbose:
        counts = numpy.bincount(dataset_index[:size], minlength=num_datasets)
        for i in range(num_datasets):
            print(f"   dataset {i}, input: {weights[i]}, achieved: {counts[i] / max(size, 1)}")


def build_exhaustive_blending_indices(
    dataset_index: numpy.ndarray,
    dataset_sample_index: numpy.ndarray,
    sizes,
    num_datasets: int,
    progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Fill the indices so that dataset i gives exactly sizes[i] samples, in blend order."""
    sizes = numpy.asarray(sizes, dtype=numpy.int64)
    if sizes.shape != (num_datasets,):
        raise ValueError(f"expected {num_datasets} dataset sizes, got {sizes.shape[0]}")
    if numpy.any(sizes <= 0):
        raise ValueError(
            f"exhaustive blending needs every dataset to have samples, got sizes {sizes.tolist()}"
        )
    total = int(sizes.sum())
    _check_outputs(dataset_index, dataset_sample_index, total)
    weights = sizes / numpy.float64(total)
    _blend(weights, sizes.astype(numpy.float64), total, dataset_index, dataset_sample_index, progress)


def _check_outputs(dataset_index, dataset_sample_index, size):
    if dataset_index.shape[0] < size or dataset_sample_index.shape[0] < size:
        raise ValueError(
            f"blending index arrays hold {dataset_index.shape[0]} and "
            f"{dataset_sample_index.shape[0]} entries, fewer than the {size} requested"
        )
