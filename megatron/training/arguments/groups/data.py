"""Megatron's "data and dataloader" group: dataset prefixes, splits, sequence length, loader."""

from ..errors import ConfigError
from ..option import DEPRECATED, UNSUPPORTED, OptionGroup

group = OptionGroup("data and dataloader")

_BERT_T5 = "BERT / T5 datasets"

group.value("--data-path", nargs="*",
            help="Dataset prefixes (PREFIX.bin + PREFIX.idx): one prefix, 'W1 P1 W2 P2 ...' "
                 "weighted pairs, or several prefixes weighted by size; split by --split.")
group.value("--split",
            help="Train,valid,test proportions of --data-path, e.g. 949,50,1 "
                 "(default with --data-path: 969, 30, 1).")
group.value("--train-data-path", nargs="*", help="Training blend, same syntax as --data-path.")
group.value("--valid-data-path", nargs="*", help="Validation blend, same syntax as --data-path.")
group.value("--test-data-path", nargs="*", help="Test blend, same syntax as --data-path.")
group.value("--data-args-path", help="File holding the --data-path value (for long blends).")
group.value("--per-split-data-args-path",
            help="JSON file with 'train', 'valid' and 'test' blends.")
group.value("--data-cache-path", help="Directory for the dataset index caches.")
group.negation("--no-mmap-bin-files", dest="mmap_bin_files",
               help="Read .bin files with pread instead of memory-mapping them.")
group.switch("--mock-data", help="Train on synthetic token sequences (no data files).")
group.value("--seq-length", type=int, help="Training sequence length.")
group.value("--encoder-seq-length", type=int,
            help="Sequence length under its encoder name (used as --seq-length for GPT).")
group.value("--decoder-seq-length", type=int, state=UNSUPPORTED, note=_BERT_T5,
            help="T5 decoder sequence length.")
group.value("--retriever-seq-length", type=int, default=256, state=UNSUPPORTED,
            help="Sequence length of the biencoder retriever.")
group.value("--sample-rate", type=float, default=1.0, state=UNSUPPORTED, note=_BERT_T5,
            help="Fraction of the training data sampled.")
group.value("--mask-prob", type=float, default=0.15, state=UNSUPPORTED, note=_BERT_T5,
            help="Probability of masking a token.")
group.value("--short-seq-prob", type=float, default=0.1, state=UNSUPPORTED, note=_BERT_T5,
            help="Probability of a short sample.")
group.value("--num-workers", type=int, default=2, help="DataLoader worker processes.")
group.switch("--reset-position-ids", help="Restart position ids after each end-of-document.")
group.switch("--reset-attention-mask",
             help="Do not attend across end-of-document tokens.")
group.switch("--eod-mask-loss", help="No loss on end-of-document tokens.")
group.negation("--no-create-attention-mask-in-dataloader",
               dest="create_attention_mask_in_dataloader",
               help="Do not build a dense attention mask in the data loader.")
group.value("--num-dataset-builder-threads", type=int, default=1,
            help="Threads per rank building dataset indices.")
group.value("--object-storage-cache-path", state=UNSUPPORTED,
            help="Cache directory for indices of object-storage datasets.")
group.value("--mid-level-dataset-surplus", type=float, default=0.005,
            help="Extra share of samples built for the datasets of a blend.")
group.switch("--allow-ambiguous-pad-tokens", state=UNSUPPORTED,
             help="Mask tokens whose id collides with the pad id.")


def _data_impl(args, value):
    if value not in ("mmap", "infer"):
        raise ConfigError(f"--data-impl {value}: only the mmap .bin/.idx format exists (the flag "
                          "was removed from Megatron-LM); remove --data-impl")


group.value("--data-impl", state=DEPRECATED, migrate=_data_impl,
            note="removed from Megatron-LM: mmap (.bin/.idx) is the only format; remove the flag",
            help="Old dataset format selector (mmap, infer).")
