"""From the dataset provider to the train/validation/test iterators each rank reads.

Datasets and loaders are built on tensor-parallel rank 0 of each group (the other ranks receive the
batch by broadcast in the forward step), unless the provider is marked ``is_distributed = True``.
"""
import inspect
from typing import Iterable, Optional, Tuple

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.training.global_vars import get_args
from megatron.training.utils import print_rank_0


def get_train_valid_test_num_samples() -> Tuple[int, Optional[int], int]:
    """Samples the run will ask of each split (Megatron's rule)."""
    args = get_args()
    # --skip-train may come without a run length: no training samples then.
    train = args.train_samples if args.train_samples else (args.train_iters or 0) * args.global_batch_size
    if getattr(args, "full_validation", False):
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


def build_train_valid_test_data_iterators(build_train_valid_test_datasets_provider):
    """Iterators for train, validation and test (None where a split is empty or not built here)."""
    args = get_args()
    if args.iteration > 0 and args.consumed_train_samples == 0:
        args.consumed_train_samples = args.iteration * args.global_batch_size
    if args.iteration > 0 and args.consumed_valid_samples == 0 and args.train_samples is None and args.eval_interval:
        args.consumed_valid_samples = (args.iteration // args.eval_interval) * args.eval_iters * args.global_batch_size

    builds_here = (getattr(build_train_valid_test_datasets_provider, "is_distributed", False)
                   or parallel_state.get_tensor_model_parallel_rank() == 0)
    loaders = (None, None, None)
    full_validation = getattr(args, "full_validation", False)
    # do_train, do_valid, do_test, and the global batches of the validation split (--full-validation).
    flags = torch.zeros(4, dtype=torch.long, device=device.current_device())
    if builds_here:
        datasets = build_train_valid_test_datasets(build_train_valid_test_datasets_provider)
        whole_split = 0  # stays 0 for external loaders: their length is unknown, --eval-iters counts
        if args.dataloader_type == "external":
            loaders = tuple(datasets)  # the provider returned iterables already
        else:
            train_ds, valid_ds, test_ds = datasets
            loaders = (_loader(train_ds, args.consumed_train_samples),
                       _loader(valid_ds, 0 if full_validation else args.consumed_valid_samples),
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
    # Every rank must agree on which loops run (and how long), whoever built the data.
    dist.broadcast(flags, src=0)
    args.do_train, args.do_valid, args.do_test = (bool(f) for f in flags.tolist()[:3])
    args.full_validation_iters = int(flags[3]) or None
    kind = args.dataloader_type
    train = _iterator(loaders[0], kind)
    if args.full_validation_iters and loaders[1] is not None:
        valid = WholeSplitIterator(loaders[1])
    else:
        valid = _iterator(loaders[1], "cyclic" if kind == "cyclic" else kind)
    test = _iterator(loaders[2], kind)
    return train, valid, test
