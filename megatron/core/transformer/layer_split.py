"""Which transformer layers a pipeline stage (and virtual stage) builds.

The split: ``num_layers_in_first_pipeline_stage`` / ``num_layers_in_last_pipeline_stage`` layers on
the first / last stage when set (Megatron's --decoder-first/last-pipeline-num-layers), the rest
evenly over the other stages. With V virtual stages per rank each stage's layers are cut into V
equal chunks, and the model is the chunks in the order (virtual stage 0: ranks 0..P-1), (virtual
stage 1: ranks 0..P-1), ...: chunk v of rank r starts after v full passes over all ranks plus the
chunks of ranks 0..r-1 in pass v.

Sizes come from the config (``pipeline_model_parallel_size``, ``virtual_pipeline_model_parallel_size``);
the stage from the caller (``pp_rank``, ``vp_stage``), the global layout's pipeline rank being only
the default. GPTModel checks that the config's sizes agree with its process groups.
"""
from typing import List, Optional

from megatron.core import parallel_state
from megatron.core.errors import ConfigError


def layers_per_stage(config) -> List[int]:
    """Transformer layers of each pipeline stage (all its virtual stages together)."""
    pp = config.pipeline_model_parallel_size
    vpp = config.virtual_pipeline_model_parallel_size or 1
    first = getattr(config, "num_layers_in_first_pipeline_stage", None)
    last = getattr(config, "num_layers_in_last_pipeline_stage", None)
    if pp == 1:
        if first is not None or last is not None:
            raise ConfigError("num_layers_in_first/last_pipeline_stage need pipeline_model_parallel_size > 1")
        counts = [config.num_layers]
    else:
        fixed = {0: first, pp - 1: last}
        remaining = config.num_layers - sum(n for n in fixed.values() if n is not None)
        free = [r for r in range(pp) if fixed.get(r) is None]
        if remaining < 0 or (not free and remaining) or (free and remaining % len(free)):
            raise ConfigError(
                f"num_layers {config.num_layers} cannot be split over {pp} pipeline stages with "
                f"{first} layer(s) on the first and {last} on the last: the other {len(free)} stage(s) must "
                "share the rest equally (--num-layers, --decoder-first-pipeline-num-layers, "
                "--decoder-last-pipeline-num-layers)")
        even = remaining // len(free) if free else 0
        counts = [fixed[r] if fixed.get(r) is not None else even for r in range(pp)]
    for rank, count in enumerate(counts):
        if count % vpp:
            raise ConfigError(f"pipeline stage {rank} holds {count} layer(s), not divisible by its {vpp} virtual "
                              "stages (--num-virtual-stages-per-pipeline-rank / "
                              "--num-layers-per-virtual-pipeline-stage)")
    return counts


def _check_stage(config, vp_stage: Optional[int], pp_rank: Optional[int]) -> None:
    vpp = config.virtual_pipeline_model_parallel_size or 1
    if vp_stage is not None and not 0 <= vp_stage < vpp:
        raise ValueError(f"vp_stage {vp_stage} is outside the {vpp} virtual pipeline stage(s) of the config")
    if pp_rank is not None and not 0 <= pp_rank < config.pipeline_model_parallel_size:
        raise ValueError(f"pp_rank {pp_rank} is outside the {config.pipeline_model_parallel_size} pipeline "
                         "stage(s) of the config")


def _rank(pp_rank: Optional[int]) -> int:
    return parallel_state.get_pipeline_model_parallel_rank() if pp_rank is None else pp_rank


def get_num_layers_to_build(config, vp_stage: Optional[int] = None, pp_rank: Optional[int] = None) -> int:
    """Layers held by one (virtual) pipeline stage."""
    _check_stage(config, vp_stage, pp_rank)
    vpp = config.virtual_pipeline_model_parallel_size or 1
    counts = layers_per_stage(config)
    if len(counts) == 1:
        return counts[0] // vpp
    return counts[_rank(pp_rank)] // vpp


def get_transformer_layer_offset(config, vp_stage: Optional[int] = None, pp_rank: Optional[int] = None) -> int:
    """Global index (0-based) of the first layer of stage ``pp_rank``, virtual stage ``vp_stage``."""
    _check_stage(config, vp_stage, pp_rank)
    vpp = config.virtual_pipeline_model_parallel_size or 1
    chunk_sizes = [count // vpp for count in layers_per_stage(config)]
    rank = _rank(pp_rank) if len(chunk_sizes) > 1 else 0
    return (vp_stage or 0) * sum(chunk_sizes) + sum(chunk_sizes[:rank])
