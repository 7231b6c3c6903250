"""Megatron's "regularization" group: dropout, weight decay, clipping, optimizer moments."""

from ..option import UNSUPPORTED, OptionGroup

group = OptionGroup("regularization")

group.value("--attention-dropout", type=float, default=0.1,
            help="Dropout on attention probabilities.")
group.value("--hidden-dropout", type=float, default=0.1,
            help="Dropout on the outputs of attention and MLP.")
group.value("--weight-decay", type=float, default=0.01, help="Weight decay coefficient.")
group.value("--start-weight-decay", type=float,
            help="Weight decay at the start of a non-constant schedule.")
group.value("--end-weight-decay", type=float,
            help="Weight decay at the end of a non-constant schedule.")
group.value("--weight-decay-incr-style", default="constant",
            choices=("constant", "linear", "cosine"),
            help="How weight decay moves from start to end.")
group.value("--clip-grad", type=float, default=1.0, help="Clip gradients to this global L2 norm.")
group.value("--adam-beta1", type=float, default=0.9, help="Adam's first-moment decay.")
group.value("--adam-beta2", type=float, default=0.999, help="Adam's second-moment decay.")
group.value("--adam-eps", type=float, default=1e-08, help="Adam's denominator epsilon.")
group.value("--sgd-momentum", type=float, default=0.9, help="SGD momentum.")

_MUON = "the Muon optimizer"
group.value("--muon-momentum", type=float, default=0.9, state=UNSUPPORTED, note=_MUON,
            help="Muon momentum.")
group.negation("--muon-no-split-qkv", dest="muon_split_qkv", state=UNSUPPORTED, note=_MUON,
               help="Treat the QKV weight as one matrix in Muon.")
group.switch("--muon-use-nesterov", state=UNSUPPORTED, note=_MUON, help="Nesterov momentum.")
group.value("--muon-scale-mode", default="spectral",
            choices=("spectral", "unit_rms_norm", "shape_scaling"), state=UNSUPPORTED,
            note=_MUON, help="Muon update scaling.")
group.value("--muon-fp32-matmul-prec", default="medium", choices=("low", "medium", "high"),
            state=UNSUPPORTED, note=_MUON, help="Matmul precision of Newton-Schulz steps.")
group.value("--muon-num-ns-steps", type=int, default=5, state=UNSUPPORTED, note=_MUON,
            help="Newton-Schulz steps.")
group.value("--muon-tp-mode", default="blockwise",
            choices=("blockwise", "duplicated", "distributed"), state=UNSUPPORTED, note=_MUON,
            help="How Muon treats tensor-parallel shards.")
group.value("--muon-extra-scale-factor", type=float, default=1.0, state=UNSUPPORTED, note=_MUON,
            help="Extra factor on the Muon update.")
