"""Pipeline-parallel flags: the stage split and the virtual stages, checked before any work starts.

Megatron's rules: --num-layers-per-virtual-pipeline-stage or --num-virtual-stages-per-pipeline-rank
(one of them) turns on the interleaved schedule, which needs more than one pipeline stage; every
stage's layers divide into its virtual stages; uneven first/last stages
(--decoder-first/last-pipeline-num-layers) leave the other stages equal shares. The micro-batch
count the interleaved schedule needs is checked once the batch sizes are known
(``check_pipeline_microbatches``).
"""
from types import SimpleNamespace

from megatron.core.errors import ConfigError
from megatron.core.transformer.layer_split import layers_per_stage


def _virtual_stages(args, pp: int):
    per_stage, per_rank = args.num_layers_per_virtual_pipeline_stage, args.num_virtual_stages_per_pipeline_rank
    if per_stage is None and per_rank is None:
        return None
    if per_stage is not None and per_rank is not None:
        raise ConfigError("give one of --num-layers-per-virtual-pipeline-stage and "
                          "--num-virtual-stages-per-pipeline-rank, not both")
    if pp == 1:
        raise ConfigError("virtual pipeline stages (--num-layers-per-virtual-pipeline-stage / "
                          "--num-virtual-stages-per-pipeline-rank) need --pipeline-model-parallel-size > 1")
    if per_stage is not None:
        if args.decoder_first_pipeline_num_layers is not None or args.decoder_last_pipeline_num_layers is not None:
            raise ConfigError("--num-layers-per-virtual-pipeline-stage assumes an even split: with "
                              "--decoder-first/last-pipeline-num-layers give --num-virtual-stages-per-pipeline-rank")
        if per_stage < 1 or args.num_layers % pp or (args.num_layers // pp) % per_stage:
            raise ConfigError(f"--num-layers-per-virtual-pipeline-stage {per_stage} must divide the layers per "
                              f"pipeline stage (--num-layers {args.num_layers} / --pipeline-model-parallel-size {pp})")
        return args.num_layers // pp // per_stage
    if per_rank < 1:
        raise ConfigError(f"--num-virtual-stages-per-pipeline-rank must be at least 1, got {per_rank}")
    return per_rank


def check_pipeline_layout(args, notes) -> None:
    """Sets args.virtual_pipeline_model_parallel_size (None without interleaving); fails on a stage
    split that cannot be built, naming the flags."""
    pp = args.pipeline_model_parallel_size
    first, last = args.decoder_first_pipeline_num_layers, args.decoder_last_pipeline_num_layers
    for flag, value in (("--decoder-first-pipeline-num-layers", first),
                        ("--decoder-last-pipeline-num-layers", last)):
        if value is not None and pp == 1:
            raise ConfigError(f"{flag} needs --pipeline-model-parallel-size > 1")
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value} (every stage holds layers here)")
    vpp = _virtual_stages(args, pp)
    if vpp == 1:
        notes.append("one virtual stage per pipeline rank is the plain 1F1B schedule: interleaving is off")
        vpp = None
    if first is None and last is None and args.num_layers % pp:
        raise ConfigError(f"--num-layers {args.num_layers} is not divisible by --pipeline-model-parallel-size "
                          f"{pp} (or give --decoder-first/last-pipeline-num-layers for uneven stages)")
    layers_per_stage(SimpleNamespace(
        num_layers=args.num_layers, pipeline_model_parallel_size=pp, virtual_pipeline_model_parallel_size=vpp,
        num_layers_in_first_pipeline_stage=first, num_layers_in_last_pipeline_stage=last))
    args.virtual_pipeline_model_parallel_size = vpp
    group = args.microbatch_group_size_per_vp_stage
    if group is not None and vpp is None:
        raise ConfigError("--microbatch-group-size-per-virtual-pipeline-stage is for the interleaved schedule: "
                          "give --num-virtual-stages-per-pipeline-rank too")
    if vpp is not None and group is None:
        args.microbatch_group_size_per_vp_stage = pp  # Megatron's default


def check_pipeline_microbatches(args) -> None:
    """The interleaved schedule's rules on the micro-batch count (global batch / (micro batch x DP)),
    checked here so that a bad layout fails before any work; the schedule applies the same check."""
    vpp = args.virtual_pipeline_model_parallel_size
    if vpp is None:
        return
    from megatron.core.pipeline_parallel.schedule_interleaved import check_interleaved_schedule
    num_microbatches = args.global_batch_size // (args.micro_batch_size * args.data_parallel_size)
    schedule_config = SimpleNamespace(virtual_pipeline_model_parallel_size=vpp, overlap_p2p_comm=False,
                                      batch_p2p_comm=True)
    check_interleaved_schedule(schedule_config, args.pipeline_model_parallel_size, vpp, num_microbatches,
                               args.microbatch_group_size_per_vp_stage)
