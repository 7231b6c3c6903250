"""Which transformer layers a pipeline stage (and virtual stage) builds: an even split of num_layers.

Sizes come from the config (``pipeline_model_parallel_size``, ``virtual_pipeline_model_parallel_size``);
the stage from the caller (``pp_rank``, ``vp_stage``), the global layout's pipeline rank being only
the default. GPTModel checks that the config's sizes agree with its process groups.
"""
from typing import Optional

from megatron.core import parallel_state


def _stages(config):
    return config.pipeline_model_parallel_size, config.virtual_pipeline_model_parallel_size or 1


def get_num_layers_to_build(config, vp_stage: Optional[int] = None, pp_rank: Optional[int] = None) -> int:
    """Layers held by one (virtual) pipeline stage."""
    pp, vpp = _stages(config)
    if config.num_layers % (pp * vpp) != 0:
        raise ValueError(f"num_layers ({config.num_layers}) must be divisible by pipeline stages x virtual "
                         f"stages ({pp} x {vpp})")
    if vp_stage is not None and not 0 <= vp_stage < vpp:
        raise ValueError(f"vp_stage {vp_stage} is outside the {vpp} virtual pipeline stage(s) of the config")
    if pp_rank is not None and not 0 <= pp_rank < pp:
        raise ValueError(f"pp_rank {pp_rank} is outside the {pp} pipeline stage(s) of the config")
    return config.num_layers // (pp * vpp)


def get_transformer_layer_offset(config, vp_stage: Optional[int] = None, pp_rank: Optional[int] = None) -> int:
    """Global index (0-based) of the first layer of stage ``pp_rank``, virtual stage ``vp_stage``."""
    if pp_rank is None:
        pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    per_chunk = get_num_layers_to_build(config, vp_stage, pp_rank)
    pp, _ = _stages(config)
    return ((vp_stage or 0) * pp + pp_rank) * per_chunk
