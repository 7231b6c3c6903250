"""Options of this project that Megatron-LM does not have."""

from ..option import OptionGroup

group = OptionGroup("config file")

group.value("--config", metavar="FILE.yaml",
            help="YAML mapping of option names (dest like tensor_model_parallel_size, or the "
                 "flag without dashes) to values; command-line flags override it.")
group.switch("--print-config",
             help="Print the resolved options (after validation) as YAML that --config reads, "
                  "then exit.")
