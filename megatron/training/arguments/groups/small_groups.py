"""Megatron's smaller groups: straggler, vision (qk-layernorm lives there), rerun engine,
one logger, fault tolerance, config logger, autoresume, MSC and the MLA, experimental groups."""

from ..option import IMPL_CHOICE, UNSUPPORTED, OptionGroup

straggler = OptionGroup("straggler")
straggler.switch("--log-straggler", state=UNSUPPORTED, help="Track and log slow GPUs.")
straggler.switch("--disable-straggler-on-startup", state=UNSUPPORTED,
                 help="Start with the straggler detector off.")
straggler.value("--straggler-ctrlr-port", type=int, default=65535, state=UNSUPPORTED,
                help="Port that toggles the straggler detector.")
straggler.value("--straggler-minmax-count", type=int, default=1, state=UNSUPPORTED,
                help="Ranks reported as fastest and slowest.")

vision = OptionGroup("vision")
vision.switch("--qk-layernorm", help="Normalize queries and keys before attention.")
vision.switch("--qk-l2-norm", state=UNSUPPORTED, help="L2-normalize queries and keys (Llama 4).")

rerun = OptionGroup("rerun engine")
_RERUN = "no re-run state machine: results are not re-validated"
rerun.value("--error-injection-rate", type=int, default=0, state=UNSUPPORTED,
            help="Inject a wrong result once every N validations.")
rerun.value("--error-injection-type", default="transient_error",
            choices=("correct_result", "transient_error", "persistent_error"), state=UNSUPPORTED,
            help="Kind of injected error.")
rerun.value("--rerun-mode", default="validate_results",
            choices=("disabled", "validate_results", "report_stats"), state=IMPL_CHOICE,
            note=_RERUN, help="Re-run engine mode.")

mla = OptionGroup("mla")
_MLA = "multi-latent attention"
mla.value("--q-lora-rank", type=int, state=UNSUPPORTED, note=_MLA, help="Query low-rank size.")
mla.value("--kv-lora-rank", type=int, default=32, state=UNSUPPORTED, note=_MLA,
          help="Key/value low-rank size.")
mla.value("--qk-head-dim", type=int, default=128, state=UNSUPPORTED, note=_MLA,
          help="Head size of the QK projection.")
mla.value("--qk-pos-emb-head-dim", type=int, default=64, state=UNSUPPORTED, note=_MLA,
          help="Head size of the positional part of QK.")
mla.value("--v-head-dim", type=int, default=128, state=UNSUPPORTED, note=_MLA,
          help="Head size of the V projection.")
mla.value("--rotary-scaling-factor", type=float, default=1.0, state=UNSUPPORTED, note=_MLA,
          help="YaRN rotary scaling factor.")
mla.value("--mscale", type=float, default=1.0, state=UNSUPPORTED, note=_MLA, help="YaRN mscale.")
mla.value("--mscale-all-dim", type=float, default=0.0, state=UNSUPPORTED, note=_MLA,
          help="YaRN mscale over all dimensions.")
mla.switch("--cache-mla-latents", state=UNSUPPORTED, note=_MLA,
           help="Cache the down-projected latents during decoding.")

one_logger = OptionGroup("one logger")
_ONE_LOGGER = "one_logger is NVIDIA-internal and never used here"
one_logger.negation("--no-one-logger", dest="enable_one_logger", state=IMPL_CHOICE,
                    note=_ONE_LOGGER, help="Do not track end-to-end metrics with one_logger.")
one_logger.value("--one-logger-project", default="megatron-lm", state=IMPL_CHOICE,
                 note=_ONE_LOGGER, help="one_logger project.")
one_logger.value("--one-logger-run-name", state=IMPL_CHOICE, note=_ONE_LOGGER,
                 help="one_logger run name.")
one_logger.switch("--one-logger-async", state=IMPL_CHOICE, note=_ONE_LOGGER,
                  help="one_logger asynchronous mode.")
one_logger.value("--app-tag-run-name", state=IMPL_CHOICE, note=_ONE_LOGGER,
                 help="Name shared by the jobs of one training run.")
one_logger.value("--app-tag-run-version", default="0.0.0", state=IMPL_CHOICE, note=_ONE_LOGGER,
                 help="Version of the training run.")

fault_tolerance = OptionGroup("ft_package")
fault_tolerance.switch("--enable-ft-package", state=UNSUPPORTED,
                       help="NVIDIA fault-tolerance package.")
fault_tolerance.switch("--calc-ft-timeouts", state=UNSUPPORTED,
                       help="Let the fault-tolerance package compute its timeouts.")

config_logger = OptionGroup("config logger")
config_logger.value("--config-logger-dir", default="", state=UNSUPPORTED,
                    help="Dump every layer's config to this directory.")

autoresume = OptionGroup("autoresume")
autoresume.switch("--adlr-autoresume", state=UNSUPPORTED, help="ADLR cluster autoresume.")
autoresume.value("--adlr-autoresume-interval", type=int, default=1000, state=UNSUPPORTED,
                 help="Iterations between autoresume checks.")

experimental = OptionGroup("experimental")
_HYBRID = "hybrid Mamba models"
experimental.switch("--enable-experimental", state=UNSUPPORTED,
                    help="Megatron's experimental features.")
experimental.value("--spec", nargs="*", state=UNSUPPORTED,
                   help="Module and function returning a custom layer spec.")
experimental.value("--hybrid-attention-ratio", type=float, default=0.0, state=UNSUPPORTED,
                   note=_HYBRID, help="Share of attention layers.")
experimental.value("--hybrid-mlp-ratio", type=float, default=0.0, state=UNSUPPORTED,
                   note=_HYBRID, help="Share of MLP layers.")
experimental.value("--hybrid-override-pattern", state=UNSUPPORTED, note=_HYBRID,
                   help="Explicit hybrid layer pattern.")
for flag, default in (("--mamba-state-dim", 128), ("--mamba-head-dim", 64),
                      ("--mamba-num-groups", 8), ("--mamba-num-heads", None)):
    experimental.value(flag, type=int, default=default, state=UNSUPPORTED, note=_HYBRID,
                       help="Mamba layer size.")
experimental.switch("--is-hybrid-model", state=UNSUPPORTED, note=_HYBRID,
                    help="The model is a hybrid model.")
experimental.switch("--disable-mamba-mem-eff-path", state=UNSUPPORTED, note=_HYBRID,
                    help="Disable Mamba's memory-efficient path.")
experimental.switch("--use-precision-aware-optimizer", state=UNSUPPORTED,
                    help="Transformer Engine's precision-aware optimizer.")
for flag, choices in (("--main-grads-dtype", ("fp32", "bf16")),
                      ("--main-params-dtype", ("fp32", "fp16")),
                      ("--exp-avg-dtype", ("fp32", "fp16", "bf16", "fp8")),
                      ("--exp-avg-sq-dtype", ("fp32", "fp16", "bf16", "fp8"))):
    experimental.value(flag, default="fp32", choices=choices, state=UNSUPPORTED,
                       note="the precision-aware optimizer",
                       help="Dtype used by the precision-aware optimizer.")

msc = OptionGroup("msc")
msc.negation("--disable-msc", dest="enable_msc", state=IMPL_CHOICE,
             note="the multi-storage client is not used; paths are local files",
             help="Do not use the multi-storage client.")
