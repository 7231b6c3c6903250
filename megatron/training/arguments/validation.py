"""validate_args: every cross-flag check and every derived value, in one place.

Megatron-LM's semantics, with messages that name the flags and the fix. Order matters and is
kept in `validate_args` below: the user's values are judged first (option states), then the
environment, then the model shape, parallel layout, batch sizes, run length, precision,
recompute, and finally files, checkpointing and logging. Nothing here prints: notes for the
user go to `args.startup_notes`, which the training initializer prints once on rank 0.

Megatron also rewrites a few implementation-choice flags here (fusion switches, pipeline overlap);
those flags change nothing in this code base, so they keep the value the user gave.
"""

import os

from . import validate_io, validate_model
from ..lr_schedule import train_iters_from_samples
from .errors import ConfigError
from .states import apply_option_states
from .validate_pipeline import check_pipeline_layout, check_pipeline_microbatches


def validate_args(args, defaults=None, world_size=None):
    """Check `args` (from parse_args) and add the derived values; returns the same namespace.

    defaults: Megatron's `args_defaults`, applied only to options the user did not give.
    world_size: the number of ranks; by default the WORLD_SIZE environment variable, else 1.
    """
    notes = getattr(args, "startup_notes", None)
    if not isinstance(notes, list):
        notes = args.startup_notes = []
    from_defaults = _apply_defaults(args, defaults or {})
    apply_option_states(args, notes)
    _environment(args, world_size)
    validate_model.derive_model_shape(args, notes)
    _parallel_layout(args, notes)
    _batch_sizes(args)
    check_pipeline_microbatches(args)
    _run_length_and_schedule(args)
    validate_model.check_precision(args, notes)
    validate_model.check_recompute(args, notes)
    validate_io.check_tokenizer(args, notes, from_defaults)
    validate_io.check_data(args, notes)
    validate_io.check_checkpointing(args)
    validate_io.check_logging(args)
    _bookkeeping(args)
    return args


def _apply_defaults(args, defaults):
    """Megatron's args_defaults: fill what the user left alone; returns the dests filled."""
    user_set = getattr(args, "user_set_options", None)
    applied = set()
    for dest, value in defaults.items():
        if user_set is not None and hasattr(args, dest):
            given = dest in user_set
        else:  # a namespace we did not parse: Megatron's rule, None means not given
            given = getattr(args, dest, None) is not None
        if not given:
            setattr(args, dest, value)
            applied.add(dest)
    return applied


def _environment(args, world_size):
    if world_size is None:
        world_size = _int_from_env("WORLD_SIZE", 1)
    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world size must be a positive integer, got {world_size!r}")
    args.world_size = world_size
    args.rank = _int_from_env("RANK", 0)
    if getattr(args, "local_rank", None) is None:
        args.local_rank = _int_from_env("LOCAL_RANK", 0)
    if not 0 <= args.rank < world_size:
        raise ConfigError(f"RANK={args.rank} is outside the world of {world_size} ranks "
                          "(WORLD_SIZE); launch with torchrun, which sets both")


def _int_from_env(name, default):
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not an integer") from None


def _parallel_layout(args, notes):
    tp, pp, cp = (args.tensor_model_parallel_size, args.pipeline_model_parallel_size,
                  args.context_parallel_size)
    for flag, size in (("--tensor-model-parallel-size", tp),
                       ("--pipeline-model-parallel-size", pp),
                       ("--context-parallel-size", cp)):
        if size < 1:
            raise ConfigError(f"{flag} must be at least 1, got {size}")
    model_ranks = tp * pp * cp
    layout = (f"--tensor-model-parallel-size {tp} x --pipeline-model-parallel-size {pp} x "
              f"--context-parallel-size {cp} = {model_ranks} ranks per model replica")
    if model_ranks > args.world_size:
        raise ConfigError(f"{layout}, but the world size is only {args.world_size}: launch more "
                          "processes (torchrun --nproc-per-node) or lower the parallel sizes")
    if args.world_size % model_ranks:
        raise ConfigError(f"{layout}, which does not divide the world size {args.world_size}: "
                          "the world must hold a whole number of model replicas")
    args.data_parallel_size = args.world_size // model_ranks
    args.transformer_pipeline_model_parallel_size = pp
    check_pipeline_layout(args, notes)

    heads = args.num_attention_heads
    if heads % tp:
        raise ConfigError(f"--num-attention-heads {heads} is not divisible by "
                          f"--tensor-model-parallel-size {tp}: each tensor-parallel rank must "
                          "hold whole heads")
    if args.group_query_attention and args.num_query_groups % tp:
        raise ConfigError(f"--num-query-groups {args.num_query_groups} is not divisible by "
                          f"--tensor-model-parallel-size {tp}: each tensor-parallel rank must "
                          "hold whole key/value groups")
    if cp > 1 and args.seq_length % (2 * cp):
        raise ConfigError(f"--seq-length {args.seq_length} must be a multiple of 2 x "
                          f"--context-parallel-size {cp}")
    if args.sequence_parallel and tp == 1:
        notes.append("--sequence-parallel turned off: it needs --tensor-model-parallel-size > 1")
    if tp == 1:
        args.sequence_parallel = False
    if args.expert_tensor_parallel_size is None:
        args.expert_tensor_parallel_size = tp
    if args.overlap_param_gather and not (args.use_distributed_optimizer and args.overlap_grad_reduce):
        raise ConfigError("--overlap-param-gather overlaps the distributed optimizer's all-gather with the next "
                          "forward: add --use-distributed-optimizer and --overlap-grad-reduce, or drop it")


def _batch_sizes(args):
    mbs = args.micro_batch_size
    if mbs is None:
        raise ConfigError("--micro-batch-size is required (samples per replica per micro-step)")
    if mbs < 1:
        raise ConfigError(f"--micro-batch-size must be at least 1, got {mbs}")
    step = mbs * args.data_parallel_size
    if args.global_batch_size is None:
        args.global_batch_size = step
    gbs = args.global_batch_size
    if gbs < 1:
        raise ConfigError(f"--global-batch-size must be at least 1, got {gbs}")
    where = (f"--micro-batch-size {mbs} x data-parallel size {args.data_parallel_size} "
             f"(world {args.world_size} / model-parallel ranks) = {step}")
    if gbs % step:
        raise ConfigError(f"--global-batch-size {gbs} is not divisible by {where}: pick a "
                          f"multiple of {step} (the quotient is the number of micro-steps)")
    rampup = args.rampup_batch_size
    if rampup:
        if len(rampup) != 3:
            raise ConfigError("--rampup-batch-size takes three numbers: START INCREMENT "
                              f"RAMP_SAMPLES, got {' '.join(map(str, rampup))}")
        start, increment, ramp_samples = rampup
        if start < 1 or increment < 1 or ramp_samples < 0:
            raise ConfigError("--rampup-batch-size START and INCREMENT must be positive and "
                              f"RAMP_SAMPLES not negative, got {start} {increment} {ramp_samples}")
        if (gbs - start) % increment:
            raise ConfigError(f"--rampup-batch-size: --global-batch-size {gbs} minus START "
                              f"{start} must be a multiple of INCREMENT {increment}")
        if start % step or increment % step:
            raise ConfigError(f"--rampup-batch-size START {start} and INCREMENT {increment} must "
                              f"be multiples of {where}")
    elif rampup is not None:
        args.rampup_batch_size = None  # `--rampup-batch-size` with no numbers means no ramp-up


def _run_length_and_schedule(args):
    training = not args.skip_train
    iters, samples = args.train_iters, args.train_samples
    if iters is not None and samples is not None:
        raise ConfigError("give one of --train-iters and --train-samples, not both")
    if training and iters is None and samples is None:
        raise ConfigError("the run length is missing: give --train-iters N or --train-samples N "
                          "(or --skip-train to only evaluate)")
    for flag, value in (("--train-iters", iters), ("--train-samples", samples)):
        if value is not None and value <= 0:
            raise ConfigError(f"{flag} must be a positive number, got {value} (to only evaluate a "
                              "checkpoint, give --skip-train instead)")
    if iters is not None or samples is not None:
        _schedule_in_one_unit(args, "iters" if iters is not None else "samples")
    if samples is not None:
        # Megatron's update_train_iters: the loops count iterations, a --train-samples run too.
        args.train_iters = train_iters_from_samples(samples, args.global_batch_size,
                                                    args.rampup_batch_size)
        if training and args.train_iters < 1:
            raise ConfigError(f"--train-samples {samples} is less than one global batch "
                              f"(--global-batch-size {args.global_batch_size}): no iteration would run")
    fraction = args.lr_warmup_fraction
    if fraction is not None and not 0.0 <= fraction < 1.0:
        raise ConfigError(f"--lr-warmup-fraction must be in [0, 1), got {fraction}")
    if training and args.lr is None:
        raise ConfigError("--lr is required for training (the peak learning rate)")
    for flag, value in (("--lr", args.lr), ("--min-lr", args.min_lr), ("--decoupled-lr", args.decoupled_lr),
                        ("--decoupled-min-lr", args.decoupled_min_lr), ("--lr-warmup-init", args.lr_warmup_init),
                        ("--weight-decay", args.weight_decay)):
        if value is not None and value < 0:
            raise ConfigError(f"{flag} must not be negative, got {value}")
    if args.lr is not None and args.min_lr > args.lr:
        raise ConfigError(f"--min-lr {args.min_lr} is above --lr {args.lr}")
    if (args.decoupled_lr is not None and args.decoupled_min_lr is not None
            and args.decoupled_min_lr > args.decoupled_lr):
        raise ConfigError(f"--decoupled-min-lr {args.decoupled_min_lr} is above --decoupled-lr "
                          f"{args.decoupled_lr}")
    _weight_decay_schedule(args)


_UNIT_WORDS = {"iters": "iterations", "samples": "samples"}


def _schedule_in_one_unit(args, unit):
    """Every length of the LR schedule must count what the run length counts (Megatron's
    dests are named alike: lr_decay_iters / lr_decay_samples, ...)."""
    other = "samples" if unit == "iters" else "iters"
    for kind, unset in (("lr_decay", None), ("lr_warmup", 0), ("lr_wsd_decay", None)):
        value = getattr(args, f"{kind}_{other}")
        if value is not None and value != unset:
            flag = f"--{kind.replace('_', '-')}-{other}"
            raise ConfigError(f"{flag} counts {_UNIT_WORDS[other]}, but the run length is given "
                              f"by --train-{unit}: give every length in the same unit")
    if unit == "iters" and args.rampup_batch_size is not None:
        raise ConfigError("--rampup-batch-size ramps over samples: give the run length with "
                          "--train-samples (and the LR lengths in samples)")
    warmup = getattr(args, f"lr_warmup_{unit}")
    if args.lr_warmup_fraction is not None and warmup:
        raise ConfigError(f"give one of --lr-warmup-fraction and --lr-warmup-{unit}, not both")
    horizon = getattr(args, f"lr_decay_{unit}") or getattr(args, f"train_{unit}")
    horizon_flag = f"--lr-decay-{unit} / --train-{unit}"
    if warmup and warmup >= horizon:
        raise ConfigError(f"the warmup --lr-warmup-{unit} {warmup} must be shorter than the "
                          f"decay horizon {horizon_flag} ({horizon})")
    if args.lr_decay_style == "WSD":
        wsd, wsd_flag = getattr(args, f"lr_wsd_decay_{unit}"), f"--lr-wsd-decay-{unit}"
        if wsd is None:
            raise ConfigError(f"--lr-decay-style WSD needs {wsd_flag}: the length of the final "
                              "decay phase")
        if not 0 < wsd <= horizon:
            raise ConfigError(f"{wsd_flag} {wsd} must be positive and at most the decay horizon "
                              f"{horizon_flag} ({horizon})")


def _weight_decay_schedule(args):
    start, end = args.start_weight_decay, args.end_weight_decay
    if args.weight_decay_incr_style == "constant":
        for flag, value in (("--start-weight-decay", start), ("--end-weight-decay", end)):
            if value is not None and value != args.weight_decay:
                raise ConfigError(f"{flag} {value} needs --weight-decay-incr-style linear or "
                                  "cosine; the constant style uses --weight-decay throughout")
        args.start_weight_decay = args.end_weight_decay = args.weight_decay
    elif start is None or end is None:
        raise ConfigError(f"--weight-decay-incr-style {args.weight_decay_incr_style} needs both "
                          "--start-weight-decay and --end-weight-decay")


def _bookkeeping(args):
    """Fixed values Megatron's training loop expects on args (see derived.py); where the run is
    (iteration, consumed samples) lives in TrainState, not here."""
    if args.dataloader_type is None:
        args.dataloader_type = "single"
    args.variable_seq_lengths = False
    # Megatron's update_use_dist_ckpt: anything but the plain torch format is "distributed".
    args.use_dist_ckpt = args.ckpt_format != "torch"
