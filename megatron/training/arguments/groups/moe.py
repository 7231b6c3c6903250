"""Megatron's "moe" group: mixture of experts (not supported yet; declared so scripts that set
these flags get a clear message and scripts that leave them at their defaults still run)."""

from ..option import IMPLEMENTED, UNSUPPORTED, OptionGroup

group = OptionGroup("moe")

_MOE = "mixture-of-experts models"


def _int_or_pattern(text):
    """--moe-layer-freq takes N or a Python-list pattern such as '([1]*3+[0])*2'."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _moe(kind, flag, **fields):
    fields.setdefault("state", UNSUPPORTED)
    fields.setdefault("note", _MOE)
    return getattr(group, kind)(flag, **fields)


_moe("value", "--expert-model-parallel-size", type=int, default=1, state=IMPLEMENTED,
     note="", unsupported_values=lambda value: value != 1, supported_text="only 1 for now",
     help="Expert-parallel size.")
_moe("value", "--expert-tensor-parallel-size", type=int,
     help="Tensor-parallel size inside experts (default: --tensor-model-parallel-size).")
_moe("value", "--num-experts", type=int, help="Experts per MoE layer (none: a dense model).")
_moe("value", "--moe-layer-freq", type=_int_or_pattern, default=1,
     help="Every Nth layer is MoE, or a pattern list of 0/1 per layer.")
_moe("value", "--moe-ffn-hidden-size", type=int, help="Inner size of each expert.")
_moe("value", "--moe-shared-expert-intermediate-size", type=int,
     help="Total inner size of the shared experts.")
_moe("switch", "--moe-shared-expert-overlap",
     help="Overlap shared experts with token dispatch.")
_moe("switch", "--moe-grouped-gemm", help="Grouped GEMM over the local experts.")
_moe("switch", "--moe-use-legacy-grouped-gemm", help="Megatron's older grouped MLP.")
_moe("switch", "--moe-layer-recompute", help="Recompute MoE layers (old switch).")
_moe("switch", "--moe-extended-tp", help="Old switch for expert tensor parallelism.")
_moe("switch", "--moe-use-upcycling", help="Turn a dense checkpoint into an MoE model.")
_moe("value", "--moe-router-load-balancing-type", nargs="+", default="aux_loss",
     choices=("aux_loss", "seq_aux_loss", "global_aux_loss", "sinkhorn", "none"),
     help="Router load-balancing strategy.")
_moe("value", "--moe-router-dtype", choices=("fp32", "fp64"), help="Router compute dtype.")
_moe("switch", "--moe-router-fusion", help="Fused top-k routing.")
_moe("value", "--moe-router-score-function", default="softmax", choices=("softmax", "sigmoid"),
     help="Router score function.")
_moe("value", "--moe-router-topk", type=int, default=2, help="Experts per token.")
_moe("switch", "--moe-router-pre-softmax", help="Softmax before the top-k selection.")
_moe("value", "--moe-router-num-groups", type=int, help="Expert groups of group-limited routing.")
_moe("value", "--moe-router-group-topk", type=int, help="Groups chosen per token.")
_moe("value", "--moe-router-topk-scaling-factor", type=float, help="Scale of top-k scores.")
_moe("switch", "--moe-router-enable-expert-bias", help="Aux-loss-free expert bias.")
_moe("value", "--moe-router-bias-update-rate", type=float, default=1e-3,
     help="Update rate of the expert bias.")
_moe("switch", "--moe-router-force-load-balancing", help="Random routing for benchmarks.")
_moe("switch", "--moe-router-padding-for-fp8", help="Pad routing for FP8.")
_moe("value", "--moe-aux-loss-coeff", type=float, nargs="+", default=0.0,
     help="Weight of the load-balancing loss.")
_moe("value", "--moe-z-loss-coeff", type=float, help="Weight of the router z-loss.")
_moe("value", "--moe-input-jitter-eps", type=float, help="Input jitter of the router.")
_moe("switch", "--moe-per-layer-logging", help="Log MoE losses per layer.")
_moe("value", "--moe-token-dispatcher-type", default="allgather",
     choices=("allgather", "alltoall", "flex"), help="Token dispatcher.")
_moe("switch", "--moe-enable-deepep", help="DeepEP dispatch.")
_moe("value", "--moe-deepep-num-sms", type=int, default=20, help="SMs used by DeepEP.")
_moe("switch", "--moe-permute-fusion", help="Fused token permutation.")
_moe("value", "--moe-expert-capacity-factor", type=float, help="Expert capacity (token dropping).")
_moe("switch", "--moe-pad-expert-input-to-capacity", help="Pad expert inputs to capacity.")
_moe("value", "--moe-token-drop-policy", default="probs", choices=("probs", "position"),
     help="Which tokens are dropped.")
_moe("switch", "--moe-apply-probs-on-input", help="Apply router probabilities before the MLP.")
_moe("switch", "--overlap-moe-expert-parallel-comm", help="Overlap expert all-to-all.")
_moe("switch", "--delay-wgrad-compute", help="Delay weight-gradient GEMMs for overlap.")
_moe("value", "--moe-upcycling-granularity", type=int, default=1,
     help="How much smaller experts are than the dense MLP when upcycling.")
_moe("switch", "--moe-pad-experts-for-cuda-graph-inference",
     help="Drop-and-pad routing while decoding with CUDA graphs.")
