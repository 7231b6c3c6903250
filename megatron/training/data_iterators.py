"""From the dataset provider to the train/validation/test iterators each rank reads.

Datasets and loaders are built on tensor-parallel rank 0 of each group (the other ranks receive the
batch by broadcast in the forward step), unless the provider is marked ``is_distributed = True``.
"""
import inspect
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.training.collective_errors import fail_together
from megatron.training.global_vars import get_args
from megatron.training.train_state import TrainState
from megatron.training.utils import print_rank_0, warn_rank_0


def get_train_valid_test_num_samples() -> Tuple[int, Optional[int], int]:
    """Samples the run will ask of each split (Megatron's rule)."""
    args = get_args()
    # --skip-train may come without a run length: no training samples then.
    train = args.train_samples if args.train_samples else (args.train_iters or 0) * args.global_batch_size
    if args.full_validation:
        valid = None
    else:
        rounds = ((args.train_iters or 0) // args.eval_interval + 1) if args.eval_interval else 1
        valid = rounds * args.eval_iters * args.global_batch_size
    test = args.eval_iters * args.global_batch_size
    return train, valid, test


def cyclic_iter(iterable: Iterable):
    while True:
        for item in iterable:
            yield item


class WholeSplitIterator:
    """--full-validation: the validation loader, started over by every evaluation, which then runs
    ``args.full_validation_iters`` global batches: the whole split, less a last partial batch."""

    def __init__(self, loader):
        self.loader = loader
        self._iterator = iter(loader)

    def restart(self) -> None:
        self._iterator = iter(self.loader)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._iterator)


def _call_provider(provider, num_samples):
    params = inspect.signature(provider).parameters
    if "vp_stage" in params:
        return provider(num_samples, vp_stage=None)
    return provider(num_samples)


def build_train_valid_test_datasets(provider):
    num_samples = get_train_valid_test_num_samples()
    print_rank_0(" > datasets target sizes (minimum size):")
    for name, n in zip(("train", "validation", "test"), num_samples):
        print_rank_0(f"    {name}: {n}")
    return _call_provider(provider, num_samples)


def _loader(dataset, consumed_samples: int):
    from megatron.training.datasets.data_samplers import build_pretraining_data_loader
    return build_pretraining_data_loader(dataset, consumed_samples)


def _iterator(loader, dataloader_type: str):
    if loader is None:
        return None
    if dataloader_type == "cyclic":
        return iter(cyclic_iter(loader))
    return iter(loader)


@dataclass
class RunData:
    """The iterators of the three splits and which loops run (every rank agrees on the flags).

    An iterator is None where the split is empty or this rank does not read data (tensor-parallel
    ranks > 0 receive their batches by broadcast): use the do_* flags to decide what runs. With
    virtual pipeline stages each split is a list of iterators, one per model chunk."""

    train: Any = None
    valid: Any = None
    test: Any = None
    do_train: bool = False
    do_valid: bool = False
    do_test: bool = False
    valid_iters: Optional[int] = None  # global batches per evaluation under --full-validation, else None


def _resume_positions(state: TrainState, args) -> None:
    """A checkpoint older than TrainState may lack the sample counts: Megatron's reconstruction."""
    if state.iteration > 0 and state.consumed_train_samples == 0:
        state.consumed_train_samples = state.iteration * args.global_batch_size
    if state.iteration > 0 and state.consumed_valid_samples == 0 and args.train_samples is None \
            and args.eval_interval:
        state.consumed_valid_samples = (state.iteration // args.eval_interval) * args.eval_iters * \
            args.global_batch_size


def _build_loaders(provider, state: TrainState, args):
    """The loaders of this rank and the flags it decides: do_train, do_valid, do_test, and the
    global batches of the validation split (--full-validation)."""
    full_validation = args.full_validation
    datasets = build_train_valid_test_datasets(provider)
    whole_split = 0  # stays 0 for external loaders: their length is unknown, --eval-iters counts
    if args.dataloader_type == "external":
        loaders = tuple(datasets)  # the provider returned iterables already
    else:
        train_ds, valid_ds, test_ds = datasets
        loaders = (_loader(train_ds, state.consumed_train_samples),
                   _loader(valid_ds, 0 if full_validation else state.consumed_valid_samples),
                   _loader(test_ds, 0))
        if full_validation and valid_ds is not None:
            whole_split = len(valid_ds) // args.global_batch_size
    wants_valid = whole_split > 0 if (full_validation and args.dataloader_type != "external") \
        else args.eval_iters > 0
    flags = torch.tensor([int(loaders[0] is not None and (args.train_iters or 0) > 0),
                          int(loaders[1] is not None and wants_valid),
                          int(loaders[2] is not None and args.eval_iters > 0),
                          whole_split],
                         dtype=torch.long, device=device.current_device())
    return loaders, flags


def build_data_iterators(build_train_valid_test_datasets_provider, state: Optional[TrainState] = None) -> RunData:
    """The three splits' iterators, each starting at the data position of ``state``."""
    args = get_args()
    state = state if state is not None else TrainState()
    _resume_positions(state, args)
    builds_here = (getattr(build_train_valid_test_datasets_provider, "is_distributed", False)
                   or parallel_state.get_tensor_model_parallel_rank() == 0)

    def build():
        if not builds_here:
            return (None, None, None), torch.zeros(4, dtype=torch.long, device=device.current_device())
        return _build_loaders(build_train_valid_test_datasets_provider, state, args)

    # Bad data fails on the ranks that read it: every rank stops with that one message.
    loaders, flags = fail_together(build)
    # Every rank must agree on which loops run (and how long), whoever built the data.
    dist.broadcast(flags, src=0)
    data = RunData(do_train=bool(flags[0]), do_valid=bool(flags[1]), do_test=bool(flags[2]),
                   valid_iters=int(flags[3]) or None)
    _warn_about_empty_splits(args, data)
    kind = args.dataloader_type
    vpp = args.virtual_pipeline_model_parallel_size

    def per_chunk(make):
        # Interleaved schedule: each model chunk steps through the micro-batches on its own, so it
        # gets its own iterator over this rank's loader; one that no chunk reads is never started.
        return [LazyIterator(make) for _ in range(vpp)] if vpp else make()

    data.train = per_chunk(lambda: _iterator(loaders[0], kind))
    if data.valid_iters and loaders[1] is not None:
        data.valid = per_chunk(lambda: WholeSplitIterator(loaders[1]))
    else:
        data.valid = per_chunk(lambda: _iterator(loaders[1], "cyclic" if kind == "cyclic" else kind))
    data.test = per_chunk(lambda: _iterator(loaders[2], kind))
    return data


class LazyIterator:
    """An iterator made on first use (a DataLoader's workers start then), passing restart() on."""

    def __init__(self, make):
        self._make, self._iterator = make, None

    def _get(self):
        if self._iterator is None:
            self._iterator = self._make()
            if self._iterator is None:
                raise StopIteration
        return self._iterator

    def restart(self) -> None:
        if self._iterator is not None and hasattr(self._iterator, "restart"):
            self._iterator.restart()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._get())


def _warn_about_empty_splits(args, data: RunData) -> None:
    """Evaluation asked for by the flags, but the split has no data: say so instead of skipping silently."""
    wants_valid = args.eval_iters > 0 and (args.eval_interval or args.skip_train)
    if wants_valid and not data.do_valid:
        warn_rank_0(f"the validation split is empty (--split {args.split}, or no --valid-data-path): no "
                    f"validation runs, although --eval-iters is {args.eval_iters}; give the validation "
                    "split a share (e.g. --split 98,2,0) or set --eval-iters 0 to silence this")
    if not args.skip_train and args.train_iters and not data.do_train:
        warn_rank_0(f"the training split is empty (--split {args.split}): nothing to train on")


def build_train_valid_test_data_iterators(build_train_valid_test_datasets_provider, train_state=None):
    """Megatron's function: (train, valid, test) iterators, None where a split is empty or not built
    on this rank. ``build_data_iterators`` also says which loops run."""
    data = build_data_iterators(build_train_valid_test_datasets_provider, train_state)
    return data.train, data.valid, data.test
