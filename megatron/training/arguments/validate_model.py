"""Checks and derived values of the model's shape, precision and activation recompute."""

from .errors import ConfigError

_REQUIRED_SHAPE = (
    ("num_layers", "--num-layers", "number of transformer layers"),
    ("hidden_size", "--hidden-size", "model width"),
    ("num_attention_heads", "--num-attention-heads", "attention heads"),
)


def derive_model_shape(args, notes):
    for dest, flag, what in _REQUIRED_SHAPE:
        value = getattr(args, dest)
        if value is None:
            raise ConfigError(f"{flag} is required ({what})")
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    args.encoder_num_layers = args.num_layers  # Megatron keeps both names in step
    _sequence_length(args)
    h, heads = args.hidden_size, args.num_attention_heads

    if args.ffn_hidden_size is None:
        # SwiGLU has two input projections: 2/3 of 4h keeps the parameter count of a 4h GeLU
        # MLP; rounded down to a multiple of 64 as Megatron does.
        args.ffn_hidden_size = int(4 * h * 2 / 3 / 64) * 64 if args.swiglu else 4 * h
    if args.kv_channels is None:
        if h % heads:
            raise ConfigError(f"--hidden-size {h} is not divisible by --num-attention-heads "
                              f"{heads}: change one of them, or give the head size with "
                              "--kv-channels")
        args.kv_channels = h // heads
    if args.group_query_attention:
        groups = args.num_query_groups
        if groups < 1 or heads % groups:
            raise ConfigError(f"--num-query-groups {groups} must divide --num-attention-heads "
                              f"{heads} (each key/value group serves a whole number of heads)")
    else:
        if "num_query_groups" in getattr(args, "user_set_options", ()) \
                and args.num_query_groups not in (1, heads):
            notes.append(f"--num-query-groups {args.num_query_groups} ignored: it needs "
                         "--group-query-attention")
        args.num_query_groups = heads  # every head has its own key/value head
    _positions(args)
    _activations_and_biases(args)
    for flag, value in (("--hidden-dropout", args.hidden_dropout),
                        ("--attention-dropout", args.attention_dropout)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{flag} must be in [0, 1), got {value}")


def _sequence_length(args):
    seq, encoder_seq = args.seq_length, args.encoder_seq_length
    if seq is None and encoder_seq is None:
        raise ConfigError("--seq-length is required (training sequence length)")
    if seq is not None and encoder_seq is not None and seq != encoder_seq:
        raise ConfigError(f"--seq-length {seq} and --encoder-seq-length {encoder_seq} disagree; "
                          "for GPT give only --seq-length")
    args.seq_length = args.encoder_seq_length = seq if seq is not None else encoder_seq
    if args.seq_length < 1:
        raise ConfigError(f"--seq-length must be at least 1, got {args.seq_length}")


def _positions(args):
    kind = args.position_embedding_type
    if kind == "learned_absolute":
        if args.max_position_embeddings is None:
            raise ConfigError("--max-position-embeddings is required with learned absolute "
                              "positions (the size of the position table, at least --seq-length)")
        if args.seq_length > args.max_position_embeddings:
            raise ConfigError(f"--seq-length {args.seq_length} is longer than "
                              f"--max-position-embeddings {args.max_position_embeddings}: the "
                              "learned position table has no row for the later positions; raise "
                              "--max-position-embeddings or use --position-embedding-type rope")
    elif args.max_position_embeddings is None:
        args.max_position_embeddings = args.seq_length
    args.add_position_embedding = kind == "learned_absolute"
    if not 0.0 < args.rotary_percent <= 1.0:
        raise ConfigError(f"--rotary-percent must be in (0, 1], got {args.rotary_percent}")
    factor = args.rotary_seq_len_interpolation_factor
    if factor is not None and factor < 1:
        raise ConfigError(f"--rotary-seq-len-interpolation-factor must be at least 1, got {factor}")


def _activations_and_biases(args):
    chosen = [flag for flag, on in (("--openai-gelu", args.openai_gelu),
                                    ("--squared-relu", args.squared_relu),
                                    ("--swiglu", args.swiglu)) if on]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)} each pick the MLP activation: keep one")
    if args.add_bias_linear:
        args.add_qkv_bias = True  # Megatron keeps the narrower switch in step with biases on


def check_precision(args, notes):
    import torch  # here, so tools that only add option groups to a parser do not load torch

    if args.fp16 and args.bf16:
        raise ConfigError("--fp16 and --bf16 are exclusive: pick one")
    if args.fp16:
        # The NaN check stays on (unlike Megatron, which turns it off under fp16): overflowing
        # gradients are the loss scaler's business and never reach it; it stops on a NaN/inf loss.
        args.params_dtype = torch.half
    elif args.bf16:
        args.params_dtype = torch.bfloat16
        # bf16 gradients lose too much when accumulated: Megatron accumulates and reduces in
        # fp32 unless the user asked for bf16 reduction.
        args.accumulate_allreduce_grads_in_fp32 = not args.grad_reduce_in_bf16
    else:
        args.params_dtype = torch.float32
    if args.fp16_lm_cross_entropy and not args.fp16:
        raise ConfigError("--fp16-lm-cross-entropy needs --fp16")
    if args.loss_scale is not None and args.loss_scale <= 0:
        raise ConfigError(f"--loss-scale must be positive, got {args.loss_scale}")
    if args.initial_loss_scale <= 0 or args.min_loss_scale <= 0:
        raise ConfigError("--initial-loss-scale and --min-loss-scale must be positive")
    if args.hysteresis < 1:
        raise ConfigError(f"--hysteresis must be at least 1, got {args.hysteresis}")


def check_recompute(args, notes):
    if args.recompute_activations:
        if args.recompute_granularity == "full":
            raise ConfigError("--recompute-activations means selective recompute but "
                              "--recompute-granularity is full: keep one of them")
        args.recompute_granularity = "selective"
    granularity, method, count = (args.recompute_granularity, args.recompute_method,
                                  args.recompute_num_layers)
    if granularity == "full":
        if method is None:
            raise ConfigError("--recompute-granularity full needs --recompute-method uniform or "
                              "block")
        layers_per_stage = args.num_layers // args.pipeline_model_parallel_size
        if count is None or not 1 <= count <= layers_per_stage:
            raise ConfigError(f"--recompute-granularity full needs --recompute-num-layers "
                              f"between 1 and the layers per pipeline stage ({layers_per_stage})")
    elif granularity == "selective":
        if method is not None or count is not None:
            raise ConfigError("--recompute-method and --recompute-num-layers are for "
                              "--recompute-granularity full; selective recompute uses "
                              "--recompute-modules")
    elif method is not None or count is not None:
        notes.append("--recompute-method / --recompute-num-layers ignored: no "
                     "--recompute-granularity given")
    if args.recompute_modules is None:
        args.recompute_modules = ["core_attn"]
    if args.distribute_saved_activations:
        check_distribute_saved_activations(args)


def check_distribute_saved_activations(args):
    """Megatron's rules: the input saved for a fully recomputed chunk is split over TP ranks, so it
    needs full recompute and TP > 1; under sequence parallelism that input is already split."""
    if args.tensor_model_parallel_size <= 1:
        raise ConfigError("--distribute-saved-activations splits saved inputs across tensor-parallel "
                          "ranks: it needs --tensor-model-parallel-size > 1")
    if args.recompute_granularity != "full":
        raise ConfigError("--distribute-saved-activations applies to full recompute only: add "
                          "--recompute-granularity full --recompute-method uniform|block")
    if args.sequence_parallel:
        raise ConfigError("--distribute-saved-activations cannot be used with --sequence-parallel: "
                          "the saved inputs are already split across tensor-parallel ranks; drop one")
