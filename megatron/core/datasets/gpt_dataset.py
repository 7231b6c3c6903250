"""GPTDataset: fixed-length samples cut from the shuffled, concatenated token sequences.

Indices are Megatron's, bit for bit (same files, seed, split, sequence length and sample count
give the same samples in the same order):

* document index: the split's sequence ids repeated once per epoch, shuffled with
  numpy.random.RandomState(seed); when the last epoch contributes few samples (< 80% of an
  epoch) it is shuffled on its own so that its samples are not spread over the whole run;
* sample index: where each sample starts (helpers.build_sample_idx);
* shuffle index: a permutation of the samples from the same RandomState (the separated last
  epoch again shuffled on its own).
"""

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy

from megatron.core.datasets import helpers
from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
from megatron.core.datasets.gpt_masks import get_ltor_masks_and_position_ids
from megatron.core.datasets.index_cache import IndexCache, default_cache_directory
from megatron.core.datasets.megatron_dataset import MegatronDataset
from megatron.core.datasets.progress import PhaseProgress
from megatron.core.datasets.split_checks import check_split_length
from megatron.core.datasets.utils import Split, log_single_rank
from megatron.core.errors import DataError

logger = logging.getLogger(__name__)

_PAD_TOKEN_ID = -1
# Mock data made without a real tokenizer (a name such as "dummy", or None) ends documents with 0.
MOCK_FALLBACK_EOD = 0
# Below this fraction of an epoch, the last epoch is shuffled separately.
_FINAL_EPOCH_THRESHOLD = 0.80

# Megatron's private name, kept for code that imports it.
_get_ltor_masks_and_position_ids = get_ltor_masks_and_position_ids


@dataclass
class GPTDatasetConfig(BlendedMegatronDatasetConfig):
    """Configuration of the GPT datasets."""

    reset_position_ids: Optional[bool] = None
    """Restart position ids after each EOD token (--reset-position-ids)."""

    reset_attention_mask: Optional[bool] = None
    """Stop attention across EOD tokens (--reset-attention-mask)."""

    eod_mask_loss: Optional[bool] = None
    """No loss on EOD tokens (--eod-mask-loss)."""

    create_attention_mask: bool = True
    """Return the dense [1, L, L] attention mask (off: --no-create-attention-mask-in-dataloader)."""

    drop_last_partial_validation_sequence: bool = True
    """Drop the last, partial validation sample (False keeps it, padded)."""

    add_extra_token_to_sequence: bool = True
    """Read L + 1 tokens per sample, so that inputs and labels both have L tokens."""

    object_storage_cache_path: Optional[str] = None
    """Accepted for Megatron's signature; object storage datasets are not supported."""

    def __post_init__(self) -> None:
        super().__post_init__()
        missing = [
            name
            for name in ("reset_position_ids", "reset_attention_mask", "eod_mask_loss")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(
                f"GPTDatasetConfig needs {', '.join(missing)} set to True or False "
                "(--reset-position-ids, --reset-attention-mask, --eod-mask-loss)"
            )
        if self.tokenizer is None and not self.mock:
            raise ValueError(
                "GPTDatasetConfig needs a tokenizer (its eod and pad ids) for real data"
            )


def _token_id(tokenizer: Any, name: str) -> Optional[int]:
    try:
        value = getattr(tokenizer, name)
    except (AttributeError, NotImplementedError):
        return None
    return None if value is None else int(value)


def eod_token_id(tokenizer: Any) -> Optional[int]:
    """The tokenizer's EOD id; None for a tokenizer given only by name (old mock scripts)."""
    return _token_id(tokenizer, "eod")


def pad_token_id(config: GPTDatasetConfig) -> int:
    """The id masked out as padding: the tokenizer's pad id, or -1 (never a real token).

    A pad id equal to the EOD/EOS id would mask every document end as padding, so it is replaced
    by -1 unless allow_ambiguous_pad_tokens says otherwise (as in Megatron-LM after 0.15).
    """
    pad = _token_id(config.tokenizer, "pad")
    if pad is None:
        return _PAD_TOKEN_ID
    special = [_token_id(config.tokenizer, name) for name in ("eos", "eod")]
    if pad in special and not config.allow_ambiguous_pad_tokens:
        log_single_rank(
            logger,
            logging.WARNING,
            f"The tokenizer's pad id {pad} equals its EOD/EOS id; padding is marked with "
            f"{_PAD_TOKEN_ID} instead so that document ends keep their loss. Set "
            "allow_ambiguous_pad_tokens=True to mask them as padding.",
        )
        return _PAD_TOKEN_ID
    return pad


class GPTDataset(MegatronDataset):
    """The GPT dataset over an IndexedDataset (sequence ids `indexed_indices` of one split)."""

    def __init__(
        self,
        indexed_dataset,
        dataset_path: Optional[str],
        indexed_indices: numpy.ndarray,
        num_samples: Optional[int],
        index_split: Split,
        config: GPTDatasetConfig,
    ) -> None:
        super().__init__(
            indexed_dataset, dataset_path, indexed_indices, num_samples, index_split, config
        )
        self.masks_and_position_ids_are_cacheable = not any(
            [config.reset_position_ids, config.reset_attention_mask, config.eod_mask_loss]
        )
        self.masks_and_position_ids_are_cached = False
        self.cached_attention_mask = None
        self.cached_loss_mask = None
        self.cached_position_ids = None

        self._eod_token_id = eod_token_id(config.tokenizer)
        if self._eod_token_id is None and config.mock:
            self._eod_token_id = MOCK_FALLBACK_EOD
        if self._eod_token_id is None and not self.masks_and_position_ids_are_cacheable:
            raise ValueError(
                "--reset-position-ids, --reset-attention-mask and --eod-mask-loss need the "
                f"tokenizer's EOD id, but tokenizer {config.tokenizer!r} has none"
            )
        self._pad_token_id = pad_token_id(config)

        self.document_index, self.sample_index, self.shuffle_index = (
            self._build_document_sample_shuffle_indices()
        )

    @staticmethod
    def numel_low_level_dataset(low_level_dataset) -> int:
        """GPT data is split by sequence (BERT-style data by document)."""
        return low_level_dataset.sequence_lengths.shape[0]

    @staticmethod
    def build_low_level_dataset(dataset_path: str, config: GPTDatasetConfig):
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        cache = config.path_to_cache or default_cache_directory(dataset_path)
        return IndexedDataset(dataset_path, multimodal=False, mmap=config.mmap_bin_files,
                              check_record_directory=cache)

    def _extra_identifiers(self) -> Dict[str, Any]:
        # Megatron leaves these out of the description although they change the indices.
        extra = {}
        if not self.config.add_extra_token_to_sequence:
            extra["add_extra_token_to_sequence"] = False
        if self._drop_last_partial_sequence() is False:
            extra["drop_last_partial_validation_sequence"] = False
        return extra

    def _drop_last_partial_sequence(self) -> bool:
        if self.index_split == Split.valid:
            return self.config.drop_last_partial_validation_sequence
        return True

    def __len__(self) -> int:
        return self.sample_index.shape[0] - 1

    def __getitem__(self, idx: Optional[int]) -> Dict[str, Any]:
        """tokens, labels, loss_mask, position_ids and (optionally) attention_mask of sample idx.

        idx None gives a padding sample (sample 0 with its loss fully masked).
        """
        import torch

        text, _ = self._query_document_sample_shuffle_indices(0 if idx is None else idx)
        text = torch.from_numpy(text)
        if self.config.add_extra_token_to_sequence:
            tokens = text[:-1].contiguous()
            labels = text[1:].contiguous()
        else:
            tokens = text
            labels = torch.roll(text, shifts=-1, dims=0)
            labels[-1] = self._pad_token_id

        if self.masks_and_position_ids_are_cacheable and self.masks_and_position_ids_are_cached:
            attention_mask = self.cached_attention_mask
            loss_mask = self.cached_loss_mask.clone()
            position_ids = self.cached_position_ids
        else:
            attention_mask, loss_mask, position_ids = get_ltor_masks_and_position_ids(
                tokens,
                self._eod_token_id,
                self.config.reset_position_ids,
                self.config.reset_attention_mask,
                self.config.eod_mask_loss,
                self.config.create_attention_mask,
            )
            if self.masks_and_position_ids_are_cacheable:
                self.cached_attention_mask = attention_mask
                self.cached_loss_mask = loss_mask.clone()
                self.cached_position_ids = position_ids
                self.masks_and_position_ids_are_cached = True

        # Padding carries no loss, and id 0 keeps the embedding lookup in range.
        loss_mask[labels == self._pad_token_id] = 0.0
        tokens[tokens == self._pad_token_id] = 0
        labels[labels == self._pad_token_id] = 0
        if idx is None:
            loss_mask = torch.zeros_like(loss_mask)

        sample = {"tokens": tokens, "labels": labels}
        if self.config.create_attention_mask:
            sample["attention_mask"] = attention_mask
        sample["loss_mask"] = loss_mask
        sample["position_ids"] = position_ids
        return sample

    def _query_document_sample_shuffle_indices(
        self, idx: int
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """The tokens of sample idx (int64, padded to full length) and the sequence ids used."""
        extra = int(self.config.add_extra_token_to_sequence)
        idx = self.shuffle_index[idx]
        doc_beg, offset_beg = (int(v) for v in self.sample_index[idx])
        doc_end, offset_end = (int(v) for v in self.sample_index[idx + 1])

        document_ids, parts = [], []
        if doc_beg == doc_end:
            document_ids.append(self.document_index[doc_beg])
            parts.append(
                self.dataset.get(
                    int(self.document_index[doc_beg]),
                    offset=offset_beg,
                    length=offset_end - offset_beg + extra,
                )
            )
        else:
            for position in range(doc_beg, doc_end + 1):
                document_ids.append(self.document_index[position])
                offset = offset_beg if position == doc_beg else 0
                length = None if position < doc_end else offset_end + extra
                parts.append(
                    self.dataset.get(
                        int(self.document_index[position]), offset=offset, length=length
                    )
                )

        wanted = self.config.sequence_length + extra
        have = sum(len(part) for part in parts)
        if have < wanted:
            parts.append(numpy.full(wanted - have, self._pad_token_id, dtype=numpy.int64))
        return (
            numpy.concatenate(parts, dtype=numpy.int64),
            numpy.array(document_ids, dtype=numpy.int64),
        )

    # ------------------------------------------------------------------------------------------
    # Index construction and caching
    # ------------------------------------------------------------------------------------------

    def _cache(self) -> Optional[IndexCache]:
        directory = self.config.path_to_cache
        if directory is None and not self.config.mock:
            directory = default_cache_directory(self.dataset.path_prefix, type(self).__name__)
        if not directory:
            return None
        # The indices depend on the sequence lengths: the cache remembers which .idx it was
        # built from (an IndexedDataset; mock and other low-level datasets have no file).
        prefix = getattr(self.dataset, "path_prefix", None)
        source_idx = prefix + ".idx" if isinstance(prefix, str) else None
        return IndexCache(
            directory,
            self.unique_description_hash,
            type(self).__name__,
            self.index_split.name,
            source_idx=source_idx,
            source_lengths=self.dataset.sequence_lengths if source_idx else None,
        )

    def _plan(self) -> Dict[str, Any]:
        """Epochs, sample counts and array layouts, computed without building anything."""
        extra = int(self.config.add_extra_token_to_sequence)
        length = self.config.sequence_length
        tokens_per_epoch = self._get_num_tokens_per_epoch()
        if tokens_per_epoch <= extra + 1 and self.num_samples:
            raise DataError(
                f"The {self.index_split.name} split of {self.dataset_path or 'the dataset'} has "
                f"{len(self.indices)} sequences and {tokens_per_epoch} tokens, too few to draw "
                f"{self.num_samples} samples of {length} tokens (--seq-length) from. Change "
                "--split so that this split gets data, or give it more data."
            )
        num_epochs = self._get_num_epochs(tokens_per_epoch)
        drop_last = self._drop_last_partial_sequence()
        plan = {"tokens_per_epoch": tokens_per_epoch, "num_epochs": num_epochs, "empty": False}
        if tokens_per_epoch <= extra + 1:
            plan["empty"] = True
            total = 0
        else:
            total = helpers._num_samples(num_epochs, tokens_per_epoch, length, drop_last, extra)
        separate = False
        if num_epochs > 1:
            sans_final = ((num_epochs - 1) * tokens_per_epoch - extra) // length
            per_epoch = (tokens_per_epoch - extra) // length
            from_final = self.num_samples - sans_final
            if not 0 <= from_final <= per_epoch + 1:
                raise RuntimeError(
                    f"internal: {from_final} samples from the final epoch of {per_epoch}"
                )
            separate = from_final < int(_FINAL_EPOCH_THRESHOLD * per_epoch)
            plan["samples_sans_final_epoch"] = sans_final
        plan.update(separate_final_epoch=separate, total_samples=total)
        check_split_length(self, tokens_per_epoch, num_epochs, total)

        num_docs = 0 if plan["empty"] else num_epochs * len(self.indices)
        sizes = self.dataset.sequence_lengths
        largest = max(num_docs, int(sizes.max()) if len(sizes) else 0)
        sample_dtype = numpy.int32 if largest <= numpy.iinfo(numpy.int32).max else numpy.int64
        shuffle_dtype = numpy.uint32 if total < numpy.iinfo(numpy.uint32).max - 1 else numpy.int64
        plan["expectations"] = {
            "document_index": ([numpy.int32], (num_docs,)),
            "sample_index": ([sample_dtype], (total + 1, 2)),
            "shuffle_index": ([shuffle_dtype], (total,)),
        }
        return plan

    def _build_document_sample_shuffle_indices(self):
        plan = self._plan()
        cache = self._cache()
        name = f"{type(self).__name__} {self.index_split.name}"
        if cache is not None:
            cached = cache.load(self.unique_description, plan["expectations"])
            if cached is not None:
                log_single_rank(logger, logging.INFO, f"Load the {name} indices")
                for key in ("document_index", "sample_index", "shuffle_index"):
                    log_single_rank(
                        logger,
                        logging.INFO,
                        f"\tLoad the {key.replace('_', ' ')} from "
                        f"{os.path.basename(cache.array_path(key))}",
                    )
                log_single_rank(
                    logger, logging.INFO, f"> total number of samples: {plan['total_samples']}"
                )
                return cached["document_index"], cached["sample_index"], cached["shuffle_index"]

        log_single_rank(logger, logging.INFO, f"Build and save the {name} indices")
        t_beg = time.time()
        document_index, sample_index, shuffle_index = self._build_indices(plan)
        if cache is not None:
            cache.save(
                self.unique_description,
                {
                    "document_index": document_index,
                    "sample_index": sample_index,
                    "shuffle_index": shuffle_index,
                },
            )
        else:
            log_single_rank(
                logger, logging.DEBUG, f"Not caching the {name} indices (no cache path)"
            )
        log_single_rank(
            logger, logging.DEBUG, f"\t> time elapsed: {time.time() - t_beg:4f} seconds"
        )
        log_single_rank(
            logger, logging.INFO, f"> total number of samples: {sample_index.shape[0] - 1}"
        )
        log_single_rank(logger, logging.INFO, f"> total number of epochs: {plan['num_epochs']}")
        return document_index, sample_index, shuffle_index

    def _build_indices(self, plan):
        expectations = plan["expectations"]
        if plan["empty"]:
            log_single_rank(
                logger,
                logging.WARNING,
                f"The {self.index_split.name} split of {self.dataset_path} has no samples",
            )
            return tuple(
                numpy.zeros(shape, dtype=dtypes[0]) for dtypes, shape in expectations.values()
            )
        random_state = numpy.random.RandomState(self.config.random_seed)
        num_docs, total = expectations["document_index"][1][0], plan["total_samples"]
        what = f"{type(self).__name__} {self.index_split.name} indices of {self.dataset_path}"
        with PhaseProgress(what, num_docs + 2 * total, "ids") as progress:
            progress.set_step(f"document index (shuffling {num_docs:,} ids)")
            document_index = _build_document_index(
                self.indices, plan["num_epochs"], random_state, plan["separate_final_epoch"]
            )
            progress.advance(num_docs)
            progress.set_step("sample index")
            sample_index = helpers.build_sample_idx(
                self.dataset.sequence_lengths,
                document_index,
                self.config.sequence_length,
                plan["num_epochs"],
                plan["tokens_per_epoch"],
                self._drop_last_partial_sequence(),
                self.config.add_extra_token_to_sequence,
                progress=progress.advance,
            )
            total = sample_index.shape[0] - 1
            progress.set_step(f"shuffle index (shuffling {total:,} ids)")
            first_part = plan["samples_sans_final_epoch"] if plan["separate_final_epoch"] else total
            shuffle_index = _build_shuffle_index(first_part, total, random_state)
        return document_index, sample_index, shuffle_index

    def _get_num_tokens_per_epoch(self) -> int:
        indices, lengths = numpy.asarray(self.indices), self.dataset.sequence_lengths
        if len(indices) and numpy.all(numpy.diff(indices) == 1):
            # The builder's splits are contiguous ranges: sum a slice instead of gathering.
            return int(
                numpy.sum(lengths[int(indices[0]) : int(indices[-1]) + 1], dtype=numpy.int64)
            )
        return int(numpy.sum(lengths[indices], dtype=numpy.int64))

    def _get_num_epochs(self, num_tokens_per_epoch: int) -> int:
        """Fewest epochs whose tokens cover num_samples samples (one epoch when None)."""
        if self.num_samples is None or num_tokens_per_epoch <= 0:
            return 1
        needed = self.num_samples * self.config.sequence_length + int(
            self.config.add_extra_token_to_sequence
        )
        return max(1, -(-needed // num_tokens_per_epoch))


def _build_document_index(
    documents: numpy.ndarray,
    num_epochs: int,
    numpy_random_state: numpy.random.RandomState,
    separate_final_epoch: bool,
) -> numpy.ndarray:
    """The split's ids once per epoch (int32), shuffled; the last epoch alone if separated."""
    if not separate_final_epoch or num_epochs == 1:
        document_index = numpy.tile(numpy.asarray(documents).astype(numpy.int32), num_epochs)
        numpy_random_state.shuffle(document_index)
        return document_index
    first = _build_document_index(documents, num_epochs - 1, numpy_random_state, False)
    last = _build_document_index(documents, 1, numpy_random_state, False)
    return numpy.concatenate((first, last))


def _build_shuffle_index(
    num_samples: int, total_size: int, numpy_random_state: numpy.random.RandomState
) -> numpy.ndarray:
    """A shuffled [0, num_samples), then (if shorter than total_size) a shuffled remainder."""
    dtype = numpy.uint32 if total_size < numpy.iinfo(numpy.uint32).max - 1 else numpy.int64
    first = numpy.arange(num_samples, dtype=dtype)
    numpy_random_state.shuffle(first)
    if num_samples == total_size:
        return first
    last = numpy.arange(num_samples, total_size, dtype=dtype)
    numpy_random_state.shuffle(last)
    return numpy.concatenate((first, last))


def __getattr__(name: str):
    # The mock datasets live in their own module (which imports this one); they are importable from
    # here as in Megatron Core, resolved lazily so that either module can be imported first
    # (a DataLoader worker started with "spawn" unpickles gpt_mock before gpt_dataset).
    if name in ("MockGPTDataset", "MockGPTLowLevelDataset"):
        from megatron.core.datasets import gpt_mock
        return getattr(gpt_mock, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
