"""Checks of everything outside the model: tokenizer files, datasets, checkpoints, logging."""

import importlib.util
import json
import os

from .errors import ConfigError

# Which files each tokenizer is built from: (dest, flag, what the file is).
_TOKENIZER_FILES = {
    "GPT2BPETokenizer": (("vocab_file", "--vocab-file", "GPT-2 vocab.json"),
                         ("merge_file", "--merge-file", "GPT-2 merges.txt")),
    "BertWordPieceLowerCase": (("vocab_file", "--vocab-file", "WordPiece vocab.txt"),),
    "BertWordPieceCase": (("vocab_file", "--vocab-file", "WordPiece vocab.txt"),),
    "SentencePieceTokenizer": (("tokenizer_model", "--tokenizer-model", "SentencePiece .model"),),
    "GPTSentencePieceTokenizer": (("tokenizer_model", "--tokenizer-model",
                                   "SentencePiece .model"),),
    "Llama2Tokenizer": (("tokenizer_model", "--tokenizer-model", "SentencePiece .model"),),
    "HuggingFaceTokenizer": (("tokenizer_model", "--tokenizer-model",
                              "Hugging Face tokenizer name or directory"),),
    "NullTokenizer": (),
    "ByteTokenizer": (),
}


def check_tokenizer(args, notes, from_defaults):
    kind = args.tokenizer_type
    needed = _TOKENIZER_FILES.get(kind, ())
    missing = [flag for dest, flag, _ in needed if getattr(args, dest) is None]
    if args.mock_data and (kind is None or (missing and "tokenizer_type" in from_defaults)):
        # Mock data needs no tokenizer files. Without a tokenizer chosen by the user (none, or
        # the entry script's default whose files are absent), use one that needs no file.
        # NullTokenizer adds one id (its end-of-document) to --vocab-size: 50256 gives GPT-2's 50257,
        # the model shape the usual GPT2BPETokenizer would give.
        kind = args.tokenizer_type = "NullTokenizer"
        if not args.vocab_size:
            args.vocab_size = 50256
        notes.append(f"--mock-data without a tokenizer: using NullTokenizer with "
                     f"{args.vocab_size + 1} ids (--vocab-size {args.vocab_size})")
        needed, missing = (), []
    if kind is None and args.vocab_size:
        kind = args.tokenizer_type = "NullTokenizer"
        notes.append(f"--vocab-size {args.vocab_size} without --tokenizer-type: using "
                     "NullTokenizer")
    if kind is None:
        raise ConfigError("--tokenizer-type is required (e.g. GPT2BPETokenizer with --vocab-file "
                          "and --merge-file, HuggingFaceTokenizer with --tokenizer-model, or "
                          "ByteTokenizer, which needs no file)")
    if missing:
        described = ", ".join(f"{flag} ({what})" for dest, flag, what in needed
                              if flag in missing)
        hint = ""
        if "--tokenizer-model" in missing and args.vocab_file is not None:
            hint = (f"; --vocab-file {args.vocab_file} is not read by this tokenizer (the epfLLM "
                    "fork passed the SentencePiece model that way): give it as --tokenizer-model")
        raise ConfigError(f"--tokenizer-type {kind} needs {described}{hint}")
    if kind == "NullTokenizer" and not args.vocab_size:
        raise ConfigError("--tokenizer-type NullTokenizer needs --vocab-size")
    for dest, flag in (("vocab_file", "--vocab-file"), ("merge_file", "--merge-file"),
                       ("tokenizer_model", "--tokenizer-model")):
        path = getattr(args, dest)
        if path is None:
            continue
        if dest == "tokenizer_model" and kind == "HuggingFaceTokenizer":
            continue  # may be a hub name, resolved by the tokenizer library
        if not os.path.exists(path):
            raise ConfigError(f"{flag} {path}: file not found")


def check_data(args, notes):
    if args.data_path is not None and args.data_args_path is not None:
        raise ConfigError("give one of --data-path and --data-args-path, not both")
    per_split_flags = [flag for flag, value in (("--train-data-path", args.train_data_path),
                                                ("--valid-data-path", args.valid_data_path),
                                                ("--test-data-path", args.test_data_path))
                       if value is not None]
    if per_split_flags and args.per_split_data_args_path is not None:
        raise ConfigError(f"give {' / '.join(per_split_flags)} or --per-split-data-args-path, "
                          "not both")
    sources = [name for name, given in (
        ("--mock-data", args.mock_data),
        ("--data-path", args.data_path is not None or args.data_args_path is not None),
        ("--train/valid/test-data-path", bool(per_split_flags)
         or args.per_split_data_args_path is not None)) if given]
    if len(sources) > 1:
        raise ConfigError(f"give a single data source, not {' and '.join(sources)}")
    if not sources and not args.skip_train and args.dataloader_type != "external":
        raise ConfigError("no training data: give --data-path PREFIX (from "
                          "tools/preprocess_data.py), --train-data-path ..., or --mock-data")

    if args.split is not None:
        check_split(args.split)
    if args.data_path is not None:
        check_blend("--data-path", args.data_path)
        if args.split is None:
            args.split = "969, 30, 1"
            notes.append("--split not given with --data-path: using Megatron's default 969, 30, 1")
    if args.data_args_path is not None:
        check_blend(f"--data-args-path {args.data_args_path}",
                    _read_text(args.data_args_path, "--data-args-path").split())
    for flag, blend in (("--train-data-path", args.train_data_path),
                        ("--valid-data-path", args.valid_data_path),
                        ("--test-data-path", args.test_data_path)):
        if blend is not None:
            check_blend(flag, blend)
    if args.per_split_data_args_path is not None:
        _check_per_split_file(args.per_split_data_args_path)
    if args.num_workers < 0:
        raise ConfigError(f"--num-workers must not be negative, got {args.num_workers}")
    if args.num_dataset_builder_threads < 1:
        raise ConfigError("--num-dataset-builder-threads must be at least 1")


def check_split(split):
    """--split: up to three non-negative proportions, not all zero (the dataset config's own
    parser, so that what passes here is what the datasets use)."""
    from megatron.core.datasets.blended_megatron_dataset_config import parse_and_normalize_split
    parse_and_normalize_split(split)


def check_blend(flag, items):
    """A blend is 'PREFIX', 'P1 P2 ...' or 'W1 P1 W2 P2 ...'; each prefix needs .bin and .idx."""
    items = [str(item) for item in items]
    if not items:
        raise ConfigError(f"{flag} needs at least one dataset prefix")
    prefixes = items
    if len(items) % 2 == 0:
        weights = [_as_number(item) for item in items[0::2]]
        if all(weight is not None for weight in weights):
            prefixes = items[1::2]
            if any(weight < 0 for weight in weights) or not any(weights):
                raise ConfigError(f"{flag}: blend weights must be non-negative and not all zero")
        elif any(weight is not None for weight in weights):
            raise ConfigError(f"{flag}: give a weight before every prefix ('W1 P1 W2 P2 ...') "
                              "or no weights at all")
    elif len(items) > 1 and _as_number(items[0]) is not None:
        raise ConfigError(f"{flag}: odd number of items; a weighted blend is 'W1 P1 W2 P2 ...'")
    for prefix in prefixes:
        missing = [prefix + ext for ext in (".bin", ".idx") if not os.path.isfile(prefix + ext)]
        if missing:
            raise ConfigError(f"{flag}: dataset prefix {prefix} needs {prefix}.bin and "
                              f"{prefix}.idx; missing {' and '.join(missing)} (give the prefix "
                              "without the extension, as written by tools/preprocess_data.py)")


def _as_number(text):
    try:
        return float(text)
    except ValueError:
        return None


def _read_text(path, flag):
    if not os.path.isfile(path):
        raise ConfigError(f"{flag} {path}: file not found")
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def _check_per_split_file(path):
    flag = "--per-split-data-args-path"
    try:
        content = json.loads(_read_text(path, flag))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{flag} {path}: not valid JSON ({error})") from None
    if not isinstance(content, dict) or not set(content) <= {"train", "valid", "test"}:
        raise ConfigError(f"{flag} {path}: expected a JSON object with 'train', 'valid' and "
                          "'test' keys")
    for split, blend in content.items():
        if blend is not None:
            check_blend(f"{flag} {path} [{split}]",
                        blend.split() if isinstance(blend, str) else blend)


def check_checkpointing(args):
    if args.save is not None:
        # Without --save-interval the run saves once, at the end of training.
        if args.save_interval is not None and args.save_interval < 1:
            raise ConfigError("--save-interval must be >= 1 (iterations between saves)")
        retain = args.save_retain_interval
        if retain is not None and args.save_interval is None:
            raise ConfigError("--save-retain-interval needs --save-interval")
        if retain is not None and (retain < 1 or retain % args.save_interval):
            raise ConfigError(f"--save-retain-interval {retain} must be a positive multiple of "
                              f"--save-interval {args.save_interval}")
    if args.use_checkpoint_args and args.load is None:
        raise ConfigError("--use-checkpoint-args needs --load (the checkpoint to read them from)")
    if args.exit_on_missing_checkpoint and args.load is None and \
            args.pretrained_checkpoint is None:
        raise ConfigError("--exit-on-missing-checkpoint needs --load")


def check_logging(args):
    if args.wandb_project and importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"--wandb-project {args.wandb_project} needs the wandb package: "
                          "pip install wandb (or drop --wandb-project)")
    for flag, value in (("--log-interval", args.log_interval),
                        ("--eval-interval", args.eval_interval),
                        ("--tensorboard-log-interval", args.tensorboard_log_interval)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.eval_iters < 0:
        raise ConfigError(f"--eval-iters must not be negative, got {args.eval_iters}")
    if args.profile and args.profile_step_end <= args.profile_step_start:
        raise ConfigError(f"--profile-step-end {args.profile_step_end} must come after "
                          f"--profile-step-start {args.profile_step_start}")
