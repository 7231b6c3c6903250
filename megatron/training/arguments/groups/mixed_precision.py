"""Megatron's "mixed precision" group: parameter dtype, loss scaling, fp32 accumulation."""

from ..option import IMPL_CHOICE, UNSUPPORTED, OptionGroup

group = OptionGroup("mixed precision")

group.switch("--fp16", help="Parameters and compute in float16 (with loss scaling).")
group.switch("--bf16", help="Parameters and compute in bfloat16.")
group.switch("--grad-reduce-in-bf16", help="Reduce gradients across data parallelism in bf16.")
group.value("--loss-scale", type=float,
            help="Static loss scale for fp16 (dynamic scaling when not given).")
group.value("--initial-loss-scale", type=float, default=2.0 ** 32,
            help="Starting dynamic loss scale.")
group.value("--min-loss-scale", type=float, default=1.0, help="Floor of the dynamic loss scale.")
group.value("--loss-scale-window", type=float, default=1000.0,
            help="Steps without overflow before the dynamic scale grows.")
group.value("--hysteresis", type=int, default=2,
            help="Overflows tolerated before the dynamic scale shrinks.")
group.switch("--fp32-residual-connection", state=UNSUPPORTED,
             help="Keep the residual stream in fp32.")
group.switch("--apply-query-key-layer-scaling", state=IMPL_CHOICE,
             note="attention softmax is computed in fp32, which gives the same result",
             help="Scale Q.K^T by 1/layer-number and undo it in an fp32 softmax (fp16 range).")
group.switch("--attention-softmax-in-fp32", state=IMPL_CHOICE,
             note="scaled_dot_product_attention already accumulates its softmax in fp32",
             help="Run attention masking and softmax in fp32.")
group.switch("--accumulate-allreduce-grads-in-fp32",
             help="Accumulate and reduce gradients in fp32 (always on with --bf16).")
group.switch("--fp16-lm-cross-entropy",
             help="Compute the output cross entropy in fp16 (needs --fp16).")
group.switch("--disable-bf16-reduced-precision-matmul", state=UNSUPPORTED,
             help="Forbid reduced-precision accumulation in bf16 matmuls.")
group.switch("--reuse-grad-buf-for-mxfp8-param-ag", state=UNSUPPORTED,
             help="Reuse the gradient buffer for the MXFP8 parameter all-gather.")
