"""Megatron's "Transformer-Engine" group: FP8/FP4 and the TE implementation switches."""

from ..option import IMPL_CHOICE, UNSUPPORTED, OptionGroup

group = OptionGroup("Transformer-Engine")

_FP8 = "FP8 training"
_FP4 = "FP4 training"

group.value("--fp8-format", dest="fp8", choices=("e4m3", "hybrid"), state=UNSUPPORTED, note=_FP8,
            help="FP8 format; setting it turns FP8 on.")
group.value("--fp8-recipe", default="delayed",
            choices=("tensorwise", "delayed", "mxfp8", "blockwise", "custom"),
            state=UNSUPPORTED, note=_FP8, help="FP8 scaling recipe.")
group.value("--fp8-quantizer-factory", state=UNSUPPORTED, note=_FP8,
            help="Import path of a custom quantizer factory.")
group.value("--fp8-margin", type=int, default=0, state=UNSUPPORTED, note=_FP8,
            help="FP8 scaling margin.")
group.value("--fp8-interval", type=int, default=1, state=UNSUPPORTED, note=_FP8,
            help="Ignored by Megatron-LM too (old FP8 scaling interval).")
group.value("--fp8-amax-history-len", type=int, default=1, state=UNSUPPORTED, note=_FP8,
            help="Steps of amax history per tensor.")
group.value("--fp8-amax-compute-algo", default="most_recent", choices=("most_recent", "max"),
            state=UNSUPPORTED, note=_FP8, help="How amax is taken from its history.")
group.negation("--no-fp8-wgrad", dest="fp8_wgrad", state=UNSUPPORTED, note=_FP8,
               help="Weight gradients in higher precision during FP8 runs.")
group.value("--transformer-impl", default="transformer_engine",
            choices=("local", "transformer_engine"), state=IMPL_CHOICE,
            note="one plain-torch implementation (torch scaled_dot_product_attention, optional "
                 "fused kernels); Transformer Engine is not needed",
            help="Transformer layer implementation.")
group.switch("--fp8-param-gather", state=UNSUPPORTED, note=_FP8,
             help="Keep parameters in FP8 and all-gather them in FP8.")
group.switch("--first-last-layers-bf16", state=UNSUPPORTED, note=_FP8,
             help="Keep the first and last layers in bf16 during FP8 runs.")
group.value("--num-layers-at-start-in-bf16", type=int, default=1, state=UNSUPPORTED, note=_FP8,
            help="Leading layers kept in bf16.")
group.value("--num-layers-at-end-in-bf16", type=int, default=1, state=UNSUPPORTED, note=_FP8,
            help="Trailing layers kept in bf16.")
group.value("--fp4-format", dest="fp4", choices=("e2m1",), state=UNSUPPORTED, note=_FP4,
            help="FP4 format; setting it turns FP4 on.")
group.value("--fp4-recipe", default="nvfp4", choices=("nvfp4", "custom"), state=UNSUPPORTED,
            note=_FP4, help="FP4 recipe.")
group.value("--fp4-quantizer-factory", state=UNSUPPORTED, note=_FP4,
            help="Import path of a custom FP4 quantizer factory.")
group.switch("--fp4-param-gather", dest="fp4_param", state=UNSUPPORTED, note=_FP4,
             help="Keep parameters in FP4 and all-gather them in FP4.")
group.switch("--te-rng-tracker", state=IMPL_CHOICE,
             note="our RNG tracker serves every layer; nothing to switch",
             help="Transformer Engine's RNG tracker (needed for CUDA graphs).")
group.switch("--inference-rng-tracker", state=UNSUPPORTED,
             help="RNG tracker configured for inference.")
