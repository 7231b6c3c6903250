"""From parsed flags to the GPT train/valid/test datasets (pretrain_gpt.py's data provider).

Flags read (Megatron's dest names): --data-path, --split, --train/valid/test-data-path,
--data-args-path, --per-split-data-args-path, --mock-data, --seed, --seq-length,
--data-cache-path, --no-mmap-bin-files, --num-dataset-builder-threads,
--mid-level-dataset-surplus, --reset-position-ids, --reset-attention-mask, --eod-mask-loss,
--no-create-attention-mask-in-dataloader, --multiple-validation-sets, --full-validation,
--allow-ambiguous-pad-tokens.
"""

import functools
import json
import logging
from typing import List, Optional, Tuple

from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset
from megatron.core.datasets.utils import get_blend_from_list, log_single_rank
from megatron.core.errors import ConfigError, MissingFileError
from megatron.training.datasets.flags import with_declared_defaults

logger = logging.getLogger(__name__)

# Megatron-LM's --split when --data-path comes without one.
LEGACY_DEFAULT_SPLIT = "969, 30, 1"


def _read_blend_file(path: str, flag: str) -> List[str]:
    try:
        with open(path, "r") as reader:
            return reader.read().split()
    except OSError as error:
        raise MissingFileError(f"{flag} {path}: cannot read it ({error})") from error


def get_blend_and_blend_per_split(args):
    """(blend, blend_per_split) from --data-path / --data-args-path or the per-split flags."""
    args = with_declared_defaults(args)
    data_path, data_args_path = args.data_path, args.data_args_path
    per_split_path = args.per_split_data_args_path
    split_paths = [args.train_data_path, args.valid_data_path, args.test_data_path]

    use_data_path = data_path is not None or data_args_path is not None
    use_per_split = per_split_path is not None or any(p is not None for p in split_paths)
    if use_data_path and use_per_split:
        raise ConfigError(
            "--data-path / --data-args-path and --train/valid/test-data-path / "
            "--per-split-data-args-path are mutually exclusive: give one kind"
        )
    if use_data_path:
        if data_args_path is not None:
            if data_path is not None:
                raise ConfigError("give --data-path or --data-args-path, not both")
            return get_blend_from_list(_read_blend_file(data_args_path, "--data-args-path")), None
        return get_blend_from_list(data_path), None
    if use_per_split:
        if per_split_path is not None:
            try:
                with open(per_split_path, "r") as reader:
                    per_split = json.load(reader)
            except (OSError, ValueError) as error:
                raise ConfigError(
                    f"--per-split-data-args-path {per_split_path}: expected a readable JSON file "
                    f'like {{"train": "1 a 2 b", "valid": "c", "test": "d"}} ({error})'
                ) from error
            split_paths = []
            for name in ("train", "valid", "test"):
                value = per_split.get(name)
                split_paths.append(value.split() if isinstance(value, str) else value)
        return None, [get_blend_from_list(paths) for paths in split_paths]
    return None, None


def gpt_dataset_config_from_args(args, tokenizer) -> GPTDatasetConfig:
    """The GPTDatasetConfig the flags describe (core_gpt_dataset_config_from_args of Megatron-LM's
    pretrain_gpt.py). `args` may hold only some flags: the others take their declared defaults."""
    blend, blend_per_split = get_blend_and_blend_per_split(args)
    args = with_declared_defaults(args)
    mock = bool(args.mock_data)
    if mock and (blend is not None or blend_per_split is not None):
        log_single_rank(logger, logging.WARNING, "--mock-data is set: ignoring the data paths")
        blend, blend_per_split = None, None
    split = args.split
    if blend is not None and split is None:
        log_single_rank(
            logger,
            logging.WARNING,
            "--data-path without --split: using Megatron's legacy default "
            f"'{LEGACY_DEFAULT_SPLIT}'",
        )
        split = LEGACY_DEFAULT_SPLIT
    if blend_per_split is not None and split is not None:
        log_single_rank(
            logger,
            logging.WARNING,
            f"--split {split} is ignored: each of --train/valid/test-data-path is a whole split",
        )
        split = None
    if args.seq_length is None:
        raise ConfigError("--seq-length is required to build GPT datasets")
    return GPTDatasetConfig(
        random_seed=args.seed,
        sequence_length=args.seq_length,
        blend=blend,
        blend_per_split=blend_per_split,
        split=split,
        multiple_validation_sets=args.multiple_validation_sets,
        full_validation=args.full_validation,
        num_dataset_builder_threads=args.num_dataset_builder_threads,
        path_to_cache=args.data_cache_path,
        mmap_bin_files=args.mmap_bin_files,
        mock=mock,
        tokenizer=tokenizer,
        reset_position_ids=bool(args.reset_position_ids),
        reset_attention_mask=bool(args.reset_attention_mask),
        eod_mask_loss=bool(args.eod_mask_loss),
        create_attention_mask=args.create_attention_mask_in_dataloader,
        mid_level_dataset_surplus=args.mid_level_dataset_surplus,
        allow_ambiguous_pad_tokens=bool(args.allow_ambiguous_pad_tokens),
    )


def is_dataset_built_on_rank(vp_stage: Optional[int] = None, every_stage: bool = False) -> bool:
    """Datasets are needed on tensor-parallel rank 0 of the first and last pipeline stages (the
    others receive their batches by broadcast), or of every stage with ``every_stage`` (an attention
    mask from the loader is needed by every stage's layers). With ``vp_stage`` (virtual pipeline),
    the first and last model chunks are meant, as in Megatron-LM."""
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        return True
    if parallel_state.get_tensor_model_parallel_rank() != 0:
        return False
    if every_stage:
        return True
    ignore_virtual = vp_stage is None
    return parallel_state.is_pipeline_first_stage(ignore_virtual=ignore_virtual, vp_stage=vp_stage) or (
        parallel_state.is_pipeline_last_stage(ignore_virtual=ignore_virtual, vp_stage=vp_stage)
    )


def _check_vocabulary_holds_mock_ids(tokenizer) -> None:
    """Megatron's mock documents are 1, 2, ..., length-1 with lengths up to 4095: fail at start,
    not with an index error inside the embedding."""
    from megatron.core.datasets.gpt_mock import MockGPTLowLevelDataset
    needed = MockGPTLowLevelDataset.max_sequence_length
    vocab = getattr(tokenizer, "vocab_size", None)
    if isinstance(vocab, int) and vocab < needed:
        raise ConfigError(f"--mock-data: the mock documents use token ids up to {needed - 1}, but the tokenizer "
                         f"has only {vocab} ids; use a tokenizer with at least {needed} ids "
                         f"(e.g. --tokenizer-type NullTokenizer --vocab-size {needed})")


def build_gpt_datasets(args, train_val_test_num_samples, tokenizer) -> Tuple:
    """(train, valid, test) datasets for the flags in `args`; None where a split has no data or
    this rank does not need data. Call on every rank (index building is coordinated)."""
    config = gpt_dataset_config_from_args(args, tokenizer)
    built_here = functools.partial(is_dataset_built_on_rank, every_stage=bool(
        args.reset_attention_mask and args.create_attention_mask_in_dataloader))
    dataset_class = MockGPTDataset if config.mock else GPTDataset
    if config.mock:
        _check_vocabulary_holds_mock_ids(tokenizer)
    else:
        from megatron.training.datasets.vocab_check import check_config_token_ids
        check_config_token_ids(config, built_here)
    log_single_rank(
        logger, logging.INFO, "> building train, validation, and test datasets for GPT ..."
    )
    train, valid, test = BlendedMegatronDatasetBuilder(
        dataset_class, list(train_val_test_num_samples), built_here, config
    ).build()
    log_single_rank(logger, logging.INFO, "> finished creating GPT datasets ...")
    return train, valid, test
