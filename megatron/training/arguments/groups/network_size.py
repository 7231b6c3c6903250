"""Megatron's "network size" group: the model's shape and its architectural switches."""

from ..option import DEPRECATED, IMPL_CHOICE, UNSUPPORTED, OptionGroup

group = OptionGroup("network size")

group.value("--num-layers", type=int, help="Number of transformer layers.")
group.value("--encoder-num-layers", type=int, state=UNSUPPORTED, note="encoder-decoder models",
            help="Encoder depth of a T5-style model.")
group.value("--decoder-num-layers", type=int, state=UNSUPPORTED, note="encoder-decoder models",
            help="Decoder depth of a T5-style model.")
group.value("--hidden-size", type=int, help="Model width.")
group.value("--ffn-hidden-size", type=int,
            help="Inner size of the MLP; 4 x hidden size when not given (with --swiglu: 2/3 of "
                 "that, rounded down to a multiple of 64).")
group.value("--num-attention-heads", type=int, help="Number of attention heads.")
group.value("--attention-backend", default="auto",
            choices=("flash", "fused", "unfused", "local", "auto"), state=IMPL_CHOICE,
            note="attention is torch scaled_dot_product_attention, which picks its kernel itself",
            help="Which attention kernel to use.")
group.value("--softmax-type", default="vanilla", choices=("learnable", "vanilla", "off-by-one"),
            unsupported_values=frozenset({"learnable", "off-by-one"}),
            supported_text="only vanilla for now",
            help="Attention softmax variant (offset softmax for attention sinks).")
group.value("--window-size", state=UNSUPPORTED, help="Sliding-window attention size.")
group.value("--window-attn-skip-freq", state=UNSUPPORTED,
            help="Which layers use full attention between sliding-window layers.")
group.value("--kv-channels", type=int,
            help="Size of each attention head; hidden size / heads when not given.")
group.switch("--group-query-attention", help="Share key/value heads between query heads (GQA).")
group.value("--num-query-groups", type=int, default=1,
            help="Number of key/value head groups when --group-query-attention is on.")
group.value("--max-position-embeddings", type=int,
            help="Longest position the model can embed (size of the learned position table).")
group.value("--position-embedding-type", default="learned_absolute",
            choices=("learned_absolute", "rope", "mrope", "relative", "none"),
            unsupported_values=frozenset({"mrope", "relative"}),
            supported_text="mrope and relative are not supported yet",
            help="How positions enter the model.")
group.value("--relative-attention-num-buckets", type=int, default=32, state=UNSUPPORTED,
            help="Buckets of relative position embeddings.")
group.value("--relative-attention-max-distance", type=int, default=128, state=UNSUPPORTED,
            help="Largest distance of relative position embeddings.")


def _use_rope(args, value):
    args.position_embedding_type = "rope"


group.switch("--use-rotary-position-embeddings", state=DEPRECATED,
             note="use --position-embedding-type rope", migrate=_use_rope,
             help="Old switch for rotary position embeddings.")
group.value("--rotary-base", type=int, default=10000, help="RoPE base (theta).")
group.value("--rotary-percent", type=float, default=1.0,
            help="Fraction of each head's dimensions that RoPE rotates.")
group.switch("--rotary-interleaved",
             help="Rotate interleaved pairs of dimensions (GPT-J layout) instead of halves.")
group.value("--rotary-seq-len-interpolation-factor", type=int,
            help="Divide positions by this factor before RoPE (linear position interpolation).")
group.switch("--use-rope-scaling", help="Scale RoPE frequencies the Llama 3.1 way.")
group.value("--rope-scaling-factor", type=float, default=8.0,
            help="Factor of --use-rope-scaling.")
group.value("--no-rope-freq", state=UNSUPPORTED, help="Layers that skip RoPE.")


def _no_position_embedding(args, value):
    # Old scripts pair this with --use-rotary-position-embeddings: rope stays rope.
    if value is False and args.position_embedding_type == "learned_absolute":
        args.position_embedding_type = "none"


group.negation("--no-position-embedding", dest="add_position_embedding", state=DEPRECATED,
               note="use --position-embedding-type none (or rope)", migrate=_no_position_embedding,
               help="Old switch to drop the learned position embedding.")
group.value("--mrope-section", type=int, nargs="+", state=UNSUPPORTED,
            help="Channel sections of multimodal RoPE.")
group.value("--make-vocab-size-divisible-by", type=int, default=128,
            help="Pad the vocabulary to a multiple of this times the tensor-parallel size.")
group.value("--normalization", default="LayerNorm", choices=("LayerNorm", "RMSNorm"),
            help="Normalization layer.")
group.value("--norm-epsilon", type=float, default=1e-5, help="Epsilon of LayerNorm / RMSNorm.")
group.switch("--apply-layernorm-1p",
             help="Store LayerNorm weights as offsets from 1 (zero-centered gamma).")
group.switch("--apply-residual-connection-post-layernorm",
             help="Take the residual after the layer norm (original BERT ordering).")
group.switch("--openai-gelu", help="Use the tanh approximation of GeLU.")
group.switch("--squared-relu", help="Use squared ReLU as the MLP activation.")
group.switch("--swiglu", help="Use a gated MLP with SiLU (SwiGLU).")
group.switch("--quick-geglu", state=UNSUPPORTED, help="Use a gated MLP with quick GeLU.")
group.value("--activation-func-clamp-value", type=float, state=UNSUPPORTED,
            help="Clamp the first MLP projection's output.")
group.value("--glu-linear-offset", type=float, default=0.0, state=UNSUPPORTED,
            help="Offset added to the linear half of a gated MLP.")
group.value("--onnx-safe", state=UNSUPPORTED, help="Work around ONNX exporter problems.")
group.negation("--bert-no-binary-head", dest="bert_binary_head", state=UNSUPPORTED,
               note="BERT models", help="BERT without the next-sentence head.")
group.switch("--untie-embeddings-and-output-weights",
             help="Give the output layer its own weights instead of the input embedding's.")
group.switch("--multi-latent-attention", state=UNSUPPORTED,
             help="DeepSeek multi-latent attention.")
group.value("--mtp-num-layers", type=int, state=UNSUPPORTED,
            help="Depth of multi-token prediction.")
group.value("--mtp-loss-scaling-factor", type=float, default=0.1, state=UNSUPPORTED,
            help="Weight of the multi-token-prediction loss.")
