"""Build the LR / weight-decay scheduler from the parsed flags, as Megatron-LM does.

The scheduler is stepped by the samples of each global batch, so every length here is a sample
count. Iteration-based runs (``--train-iters``) give lengths in iterations, multiplied by
``--global-batch-size``; sample-based runs (``--train-samples``) give them in samples directly:

    run length   LR decay                  LR warmup                                   WSD anneal
    iters        --lr-decay-iters*gbs      --lr-warmup-fraction*decay or -iters*gbs    --lr-wsd-decay-iters*gbs
    samples      --lr-decay-samples        --lr-warmup-fraction*decay or -samples      --lr-wsd-decay-samples

The decay length defaults to the run length; weight decay grows over the whole run.
"""
from typing import List, Optional, Tuple

from megatron.core.errors import ConfigError
from megatron.core.num_microbatches_calculator import build_num_microbatches_calculator
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler


def _weight_decay_range(args) -> Tuple[float, float]:
    """(start, end) weight decay; the constant style uses --weight-decay for both."""
    style = args.weight_decay_incr_style
    start = args.start_weight_decay
    end = args.end_weight_decay
    if style == "constant":
        if start is None and end is None:
            return args.weight_decay, args.weight_decay
        if start is None or end is None or start != end:
            raise ConfigError(
                "--weight-decay-incr-style constant uses --weight-decay throughout: leave out "
                f"--start-weight-decay ({start}) and --end-weight-decay ({end}), or pick the linear or "
                "cosine style"
            )
        return start, end
    if start is None or end is None:
        raise ConfigError(
            f"--weight-decay-incr-style {style} needs both --start-weight-decay and --end-weight-decay"
        )
    return start, end


def _iteration_based_lengths(args) -> Tuple[float, float, float, Optional[float]]:
    for flag, value, unset in (
        ("--lr-decay-samples", args.lr_decay_samples, None),
        ("--lr-warmup-samples", args.lr_warmup_samples, 0),
        ("--lr-wsd-decay-samples", args.lr_wsd_decay_samples, None),
        ("--rampup-batch-size", args.rampup_batch_size, None),
    ):
        if value != unset and value is not None:
            raise ConfigError(f"{flag} is for sample-based runs (--train-samples); this run uses --train-iters")
    gbs = args.global_batch_size
    decay_iters = args.lr_decay_iters
    decay = (args.train_iters if decay_iters is None else decay_iters) * gbs
    warmup_iters = args.lr_warmup_iters or 0
    fraction = args.lr_warmup_fraction
    if fraction is not None and warmup_iters:
        raise ConfigError("give one of --lr-warmup-fraction and --lr-warmup-iters, not both")
    warmup = fraction * decay if fraction is not None else warmup_iters * gbs
    wsd_iters = args.lr_wsd_decay_iters
    wsd = wsd_iters * gbs if wsd_iters is not None else None
    return warmup, decay, args.train_iters * gbs, wsd


def _sample_based_lengths(args) -> Tuple[float, float, float, Optional[float]]:
    for flag, value, unset in (
        ("--lr-decay-iters", args.lr_decay_iters, None),
        ("--lr-warmup-iters", args.lr_warmup_iters, 0),
        ("--lr-wsd-decay-iters", args.lr_wsd_decay_iters, None),
    ):
        if value != unset and value is not None:
            raise ConfigError(f"{flag} is for iteration-based runs (--train-iters); this run uses --train-samples")
    decay = args.lr_decay_samples
    decay = args.train_samples if decay is None else decay
    warmup_samples = args.lr_warmup_samples or 0
    fraction = args.lr_warmup_fraction
    if fraction is not None and warmup_samples:
        raise ConfigError("give one of --lr-warmup-fraction and --lr-warmup-samples, not both")
    warmup = fraction * decay if fraction is not None else warmup_samples
    return warmup, decay, args.train_samples, args.lr_wsd_decay_samples


def scheduler_from_args(optimizer, args) -> OptimizerParamScheduler:
    """Megatron's ``get_optimizer_param_scheduler``: lengths converted to samples (see above).

    ``args`` is never modified (Megatron writes back lr_decay_iters / train_iters; our
    arguments module derives those).
    """
    # Sample-based first: a derived args.train_iters must not turn a --train-samples run into an
    # iteration-based one.
    if args.train_samples:
        warmup, decay, wd_incr, wsd = _sample_based_lengths(args)
    elif args.train_iters:
        warmup, decay, wd_incr, wsd = _iteration_based_lengths(args)
    else:
        raise ConfigError("give the run length: --train-iters or --train-samples (a positive number)")
    start_wd, end_wd = _weight_decay_range(args)
    if args.lr is None:
        raise ConfigError("--lr is required to build the learning-rate schedule")
    return OptimizerParamScheduler(
        optimizer,
        init_lr=args.lr_warmup_init,
        max_lr=args.lr,
        min_lr=args.min_lr,
        lr_warmup_steps=warmup,
        lr_decay_steps=decay,
        lr_decay_style=args.lr_decay_style,
        start_wd=start_wd,
        end_wd=end_wd,
        wd_incr_steps=wd_incr,
        wd_incr_style=args.weight_decay_incr_style,
        use_checkpoint_opt_param_scheduler=args.use_checkpoint_opt_param_scheduler,
        override_opt_param_scheduler=args.override_opt_param_scheduler,
        wsd_decay_steps=wsd,
        lr_wsd_decay_style=args.lr_wsd_decay_style,
    )


def train_iters_from_samples(
    train_samples: int, global_batch_size: int, rampup_batch_size: Optional[List[int]] = None
) -> int:
    """Iterations of a ``--train-samples`` run (Megatron's ``update_train_iters``).

    With a batch-size ramp, the ramp's smaller batches are walked one by one; after the ramp,
    full global batches follow and a last partial batch is dropped.
    """
    if rampup_batch_size is None:
        return train_samples // global_batch_size
    # micro-batch 1 and data-parallel 1 make every ramp size valid; only the sizes matter here.
    ramp = build_num_microbatches_calculator(
        rank=-1, rampup_batch_size=rampup_batch_size, global_batch_size=global_batch_size,
        micro_batch_size=1, data_parallel_size=1,
    )
    ramp_samples = int(rampup_batch_size[2])
    iterations = consumed = 0
    while consumed <= ramp_samples and consumed <= train_samples:
        ramp.update(consumed, consistency_check=False)
        consumed += ramp.get_current_global_batch_size()
        iterations += 1
    if train_samples > consumed:
        iterations += (train_samples - consumed) // global_batch_size
    return iterations


def learning_rates_for_logging(param_groups) -> Tuple[Optional[float], Optional[float]]:
    """(learning rate, decoupled learning rate) as Megatron's log line shows them: the LR of the
    ordinary groups and of the groups marked ``is_decoupled_lr`` (None when there are none)."""
    learning_rate = decoupled = None
    for group in param_groups:
        if group.get("is_decoupled_lr", False):
            decoupled = group["lr"]
        else:
            learning_rate = group["lr"]
    return learning_rate, decoupled
