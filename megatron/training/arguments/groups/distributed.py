"""Megatron's "distributed" group: parallel layout, backend, data-parallel communication."""

from ..option import DEPRECATED, IMPL_CHOICE, UNSUPPORTED, OptionGroup
from .migrate import replace

group = OptionGroup("distributed")

_PP_TUNING = "a pipeline-schedule tuning option that is not supported yet"
_SPLIT = "stages are split by transformer layers only; use --decoder-first/last-pipeline-num-layers"
_FSDP = "FSDP"
_NO_OVERLAP = "data-parallel communication runs after the backward pass, without overlap"


def _only_one(value):
    return value != 1


group.value("--tensor-model-parallel-size", type=int, default=1,
            help="Tensor-parallel size: ranks sharing each layer's weights.")
group.value("--pipeline-model-parallel-size", type=int, default=1,
            help="Pipeline-parallel size: stages of layers (1F1B schedule; interleaved with virtual stages).")
group.value("--decoder-first-pipeline-num-layers", type=int,
            help="Layers on the first pipeline stage (uneven split; the other stages share the rest).")
group.value("--decoder-last-pipeline-num-layers", type=int,
            help="Layers on the last pipeline stage (uneven split; the other stages share the rest).")
group.value("--pipeline-model-parallel-layout", state=UNSUPPORTED,
            note="use --decoder-first/last-pipeline-num-layers for uneven stages",
            help="Explicit layer layout of the pipeline stages.")


def _model_parallel_size(args, value):
    replace(args, "tensor_model_parallel_size", value, "--model-parallel-size",
            "--tensor-model-parallel-size")


group.value("--model-parallel-size", type=int, state=DEPRECATED,
            note="use --tensor-model-parallel-size", migrate=_model_parallel_size,
            help="Old name of the tensor-parallel size.")
group.value("--num-layers-per-virtual-pipeline-stage", type=int,
            help="Layers per virtual stage (interleaved schedule).")
group.value("--num-virtual-stages-per-pipeline-rank", type=int,
            help="Virtual stages per pipeline rank (interleaved schedule).")
group.value("--microbatch-group-size-per-virtual-pipeline-stage", type=int,
            dest="microbatch_group_size_per_vp_stage",
            help="Consecutive micro-batches per virtual stage (default: the pipeline size).")
group.negation("--no-overlap-p2p-communication", dest="overlap_p2p_comm", state=IMPL_CHOICE,
               note="pipeline sends and receives are batched and waited for before compute (no overlap)",
               help="Do not overlap pipeline send/receive with compute.")
group.switch("--overlap-p2p-communication-warmup-flush", dest="overlap_p2p_comm_warmup_flush",
             state=UNSUPPORTED, note=_PP_TUNING,
             help="Overlap pipeline communication in warmup and flush too.")
group.value("--distributed-backend", default="nccl", choices=("nccl", "gloo"),
            help="torch.distributed backend (gloo on CPU; nccl turns into gloo when there is no "
                 "GPU and the flag was not given).")
group.value("--distributed-timeout-minutes", type=int, default=10,
            help="Timeout of collective operations.")
group.value("--distributed-timeout-seconds-after-init", type=int, state=UNSUPPORTED,
            help="Timeout of process groups once initialization is done.")
group.switch("--overlap-grad-reduce",
             help="Overlap the gradient reduction with the backward pass (each bucket is all-reduced "
                  "as soon as its last gradient of the step is in).")
group.switch("--defer-embedding-wgrad-compute", state=UNSUPPORTED, note=_PP_TUNING,
             help="Defer the output layer's weight gradient to the pipeline flush.")
group.value("--wgrad-deferral-limit", type=int, default=0, state=UNSUPPORTED, note=_PP_TUNING,
            help="Micro-batches whose output-layer weight gradient is deferred.")
group.negation("--no-align-grad-reduce", dest="align_grad_reduce", state=IMPL_CHOICE,
               note=_NO_OVERLAP, help="Let pipeline stages start gradient reduction on their own.")
group.value("--ddp-num-buckets", type=int, state=UNSUPPORTED,
            help="Number of data-parallel communication buckets.")
group.value("--ddp-bucket-size", type=int,
            help="Elements per data-parallel communication bucket (default max(40M, 1M x data-parallel size)).")
group.switch("--ddp-pad-buckets-for-high-nccl-busbw", state=UNSUPPORTED,
             help="Pad buckets to a large power of 2 for NCCL bandwidth.")
group.switch("--ddp-reduce-scatter-with-fp32-accumulation", state=UNSUPPORTED,
             help="Reduce-scatter in low precision with fp32 accumulation.")
group.switch("--ddp-average-in-collective",
             help="Average gradients inside the collective instead of scaling first.")
group.switch("--overlap-param-gather",
             help="Overlap the distributed optimizer's parameter all-gather with the next forward pass "
                  "(needs --use-distributed-optimizer and --overlap-grad-reduce).")
group.switch("--overlap-param-gather-with-optimizer-step", state=UNSUPPORTED, note=_PP_TUNING,
             help="Overlap the first bucket's all-gather with the optimizer step.")
group.negation("--no-align-param-gather", dest="align_param_gather", state=UNSUPPORTED, note=_PP_TUNING,
               help="Let pipeline stages start parameter all-gathers on their own.")
group.negation("--no-scatter-gather-tensors-in-pipeline",
               dest="scatter_gather_tensors_in_pipeline", state=IMPL_CHOICE,
               note="activations always travel whole between stages",
               help="Send whole tensors between pipeline stages.")
group.switch("--use-ring-exchange-p2p", state=UNSUPPORTED, note=_PP_TUNING,
             help="Custom ring-exchange pipeline communication.")
group.value("--local-rank", "--local_rank", type=int,
            help="Local rank from the launcher (torch.distributed.launch passes it; default: "
                 "$LOCAL_RANK, else 0).")
group.value("--lazy-mpu-init", state=UNSUPPORTED,
            help="Leave process-group setup to an external manager.")
group.switch("--account-for-embedding-in-pipeline-split", state=UNSUPPORTED, note=_SPLIT,
             help="Count the embedding as a layer when splitting stages.")
group.switch("--account-for-loss-in-pipeline-split", state=UNSUPPORTED, note=_SPLIT,
             help="Count the loss as a layer when splitting stages.")
group.switch("--use-distributed-optimizer",
             help="Shard the fp32 master weights and optimizer moments over data-parallel ranks (ZeRO-1): "
                  "gradients reduce-scattered, updated weights all-gathered.")
group.switch("--use-nccl-ub", dest="nccl_ub", state=UNSUPPORTED,
             help="NCCL userbuffer registration for data-parallel buffers.")
group.switch("--disable-symmetric-registration", state=UNSUPPORTED,
             help="Local instead of symmetric NCCL userbuffer registration.")
group.switch("--use-sharp", state=UNSUPPORTED, help="InfiniBand SHARP collectives.")
group.value("--sharp-enabled-group", choices=("dp", "dp_replica"), state=UNSUPPORTED,
            help="Process group that uses SHARP.")
group.switch("--use-megatron-fsdp", state=UNSUPPORTED, note=_FSDP, help="Megatron FSDP.")
group.switch("--init-model-with-meta-device", state=UNSUPPORTED, note=_FSDP,
             help="Build the model on the meta device.")
group.value("--data-parallel-sharding-strategy", default="no_shard",
            choices=("no_shard", "optim", "optim_grads", "optim_grads_params"),
            state=UNSUPPORTED, note=_FSDP, help="What Megatron FSDP shards.")
group.negation("--no-gradient-reduce-div-fusion", dest="gradient_reduce_div_fusion",
               state=UNSUPPORTED, note=_FSDP, help="Do not fuse the division into the reduce.")
group.switch("--fsdp-double-buffer", state=UNSUPPORTED, note=_FSDP,
             help="Double-buffer FSDP communication memory.")
group.value("--suggested-communication-unit-size", type=int, state=UNSUPPORTED, note=_FSDP,
            help="Elements per FSDP communication.")
group.switch("--keep-fp8-transpose-cache", state=UNSUPPORTED, note=_FSDP,
             help="Keep the FP8 transpose cache under FSDP.")
group.switch("--enable-full-sharding-in-hsdp", state=UNSUPPORTED, note=_FSDP,
             help="Full sharding in hybrid-sharded mode.")
group.value("--num-distributed-optimizer-instances", type=int, default=1, state=UNSUPPORTED,
            help="Copies of the distributed optimizer across data parallelism.")
group.switch("--use-torch-fsdp2", state=UNSUPPORTED, note=_FSDP, help="PyTorch FSDP2.")
group.negation("--torch-fsdp2-no-reshard-after-forward",
               dest="torch_fsdp2_reshard_after_forward", state=UNSUPPORTED, note=_FSDP,
               help="Keep FSDP2 weights gathered after the forward pass.")
group.value("--context-parallel-size", type=int, default=1, unsupported_values=_only_one,
            supported_text="only 1 for now",
            help="Context-parallel size: ranks splitting each sequence.")
group.value("--cp-comm-type", nargs="+", default=["p2p"], state=UNSUPPORTED,
            note="context parallelism", help="Context-parallel communication per layer.")
group.value("--hierarchical-context-parallel-sizes", type=int, nargs="+", state=UNSUPPORTED,
            note="context parallelism", help="Levels of hierarchical context parallelism.")
group.value("--nccl-communicator-config-path", state=UNSUPPORTED,
            help="YAML file of NCCL communicator settings.")
group.switch("--use-tp-pp-dp-mapping",
             help="Order ranks tp-cp-ep-pp-dp instead of tp-cp-ep-dp-pp.")
group.switch("--replication", state=UNSUPPORTED, note="local checkpoints",
             help="Replicate local checkpoints on other ranks.")
group.value("--replication-jump", type=int, state=UNSUPPORTED, note="local checkpoints",
            help="Rank spacing of checkpoint replicas.")
group.value("--replication-factor", type=int, default=2, state=UNSUPPORTED,
            note="local checkpoints", help="Machines holding each replica.")
