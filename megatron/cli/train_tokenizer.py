"""Train a tokenizer on jsonl text, for users who have no vocabulary yet.

* ``--type bpe``: GPT-2-style byte-level BPE (Hugging Face ``tokenizers``). Writes
  ``vocab.json`` + ``merges.txt`` (for ``--tokenizer-type GPT2BPETokenizer``; eod is
  ``<|endoftext|>``, in the vocab) and ``tokenizer.json`` + ``tokenizer_config.json`` (for
  ``--tokenizer-type HuggingFaceTokenizer --tokenizer-model DIR``). Both give the same ids.
* ``--type sentencepiece``: a SentencePiece model, BPE by default, Llama-2 style (byte fallback,
  digits split, text kept as is: no normalization, whitespace runs kept). Writes
  ``tokenizer.model`` for SentencePieceTokenizer, GPTSentencePieceTokenizer or Llama2Tokenizer.

The input is read as a stream, one jsonl line at a time (``.gz`` and globs are fine); use
``--max-documents`` / ``--max-mb`` to train on a sample. The same input gives the same files.

    megatron-train-tokenizer --input corpus.jsonl --type bpe --vocab-size 16000 \\
        --output-dir my-tokenizer
"""
import argparse
import glob
import gzip
import io
import json
import os
import sys
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from megatron.core.errors import ConfigError, DataError, MissingFileError

EOD_TOKEN = "<|endoftext|>"
BYTES_PER_MB = 1_000_000


def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """The files `inputs` name (paths or globs), each glob sorted, in the order given."""
    files: List[str] = []
    for pattern in inputs:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not all(os.path.isfile(m) for m in matches):
            raise MissingFileError(f"--input {pattern}: expected a jsonl file (or a glob "
                                    "matching some); found none")
        files.extend(matches)
    return files


def iter_texts(
    inputs: Sequence[str],
    json_keys: Sequence[str] = ("text",),
    max_documents: Optional[int] = None,
    max_mb: Optional[float] = None,
) -> Iterator[str]:
    """The `json_keys` texts of each jsonl line, streamed; stops after `max_documents` lines
    or once `max_mb` MB of lines have been read."""
    limit = None if max_mb is None else max_mb * BYTES_PER_MB
    documents, read = 0, 0
    for path in expand_inputs(inputs):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as raw:
            for line_number, line in enumerate(raw, start=1):
                if (max_documents is not None and documents >= max_documents) or (
                        limit is not None and read >= limit):
                    return
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"--input {path}, line {line_number}: not JSON ({err})")
                for key in json_keys:
                    if key not in record:
                        raise DataError(f"--json-keys: line {line_number} of {path} has no "
                                         f"{key!r} (keys: {sorted(record)})")
                    yield record[key]
                documents += 1
                read += len(line)


def _write_files(output_dir: str, contents: Dict[str, bytes]) -> Dict[str, str]:
    """Write every file under a temporary name, then rename them all: no half-written set."""
    os.makedirs(output_dir, exist_ok=True)
    tmp_paths = {}
    try:
        for name, data in contents.items():
            tmp = os.path.join(output_dir, f".{name}.tmp.{os.getpid()}")
            with open(tmp, "wb") as f:
                f.write(data)
            tmp_paths[name] = tmp
        final = {}
        for name, tmp in tmp_paths.items():
            final[name] = os.path.join(output_dir, name)
            os.replace(tmp, final[name])
        return final
    finally:
        for tmp in tmp_paths.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Dict[str, bytes]:
    """GPT-2-style byte-level BPE; returns the file contents by name."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 257:
        raise ConfigError(f"--vocab-size: byte-level BPE needs at least 257 (256 bytes + "
                         f"{EOD_TOKEN}), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    saved = json.loads(tokenizer.to_str())
    vocab = saved["model"]["vocab"]
    # Older tokenizers releases save a merge as "a b", newer ones as ["a", "b"].
    merges = [m.split(" ") if isinstance(m, str) else m for m in saved["model"]["merges"]]
    ordered_vocab = dict(sorted(vocab.items(), key=lambda item: item[1]))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOD_TOKEN,
        "eos_token": EOD_TOKEN,
        "unk_token": EOD_TOKEN,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000_000,
    }
    return {
        "vocab.json": json.dumps(ordered_vocab, ensure_ascii=False).encode("utf-8"),
        # Megatron-LM skips the first line and needs the final newline (see gpt2_bpe.py).
        "merges.txt": ("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)).encode(),
        "tokenizer.json": tokenizer.to_str(pretty=False).encode("utf-8"),
        "tokenizer_config.json": json.dumps(config, indent=2).encode("utf-8"),
    }


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    """SentencePiece trains on lines (a document is far longer than its sentence limit)."""
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def train_sentencepiece(
    texts: Iterable[str], vocab_size: int, model_type: str = "bpe", threads: int = 4
) -> Dict[str, bytes]:
    """A SentencePiece model (Llama-2-style options); returns {"tokenizer.model": bytes}.

    The model depends on the number of training threads, so it is a fixed number rather than
    the machine's core count: the same input gives the same model on every machine.
    """
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            byte_fallback=True,  # any character encodes (as bytes), nothing becomes <unk>
            split_digits=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,  # indentation and spacing survive a round trip
            allow_whitespace_only_pieces=True,
            hard_vocab_limit=False,  # a small sample gives a smaller vocabulary, not an error
            shuffle_input_sentence=False,  # read in order: the same input, the same model
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as err:
        raise DataError(f"sentencepiece training failed: {err}. With a small sample, lower "
                         "--vocab-size or give more text") from err
    return {"tokenizer.model": model.getvalue()}


def train_tokenizer(
    inputs: Sequence[str],
    output_dir: str,
    tokenizer_kind: str = "bpe",
    vocab_size: int = 32000,
    json_keys: Sequence[str] = ("text",),
    max_documents: Optional[int] = None,
    max_mb: Optional[float] = None,
    model_type: str = "bpe",
    threads: int = 4,
) -> Dict[str, str]:
    """Train on the jsonl `inputs` and write the files to `output_dir`; returns their paths."""
    texts = iter_texts(inputs, json_keys, max_documents, max_mb)
    if tokenizer_kind == "bpe":
        contents = train_bpe(texts, vocab_size)
    elif tokenizer_kind == "sentencepiece":
        contents = train_sentencepiece(texts, vocab_size, model_type, threads)
    else:
        raise ConfigError(f"--type: expected bpe or sentencepiece, got {tokenizer_kind!r}")
    return _write_files(output_dir, contents)


def usage_hint(tokenizer_kind: str, output_dir: str, legacy: bool = False) -> str:
    """What to pass to preprocess_data.py and pretrain_gpt.py for the files just written."""
    mode = " --legacy-tokenizer" if legacy else ""
    if tokenizer_kind == "bpe":
        flags = (f"--tokenizer-type GPT2BPETokenizer --vocab-file {output_dir}/vocab.json "
                 f"--merge-file {output_dir}/merges.txt{mode}")
        alt = f"--tokenizer-type HuggingFaceTokenizer --tokenizer-model {output_dir}{mode}"
    else:
        flags = ("--tokenizer-type GPTSentencePieceTokenizer "
                 f"--tokenizer-model {output_dir}/tokenizer.model{mode}")
        alt = (f"--tokenizer-type SentencePieceTokenizer (or Llama2Tokenizer) --tokenizer-model "
               f"{output_dir}/tokenizer.model{mode}")
    return ("Use it with the same flags for both steps:\n"
            f"  python tools/preprocess_data.py --input DATA.jsonl --output-prefix my-data "
            f"--append-eod --workers 2 {flags}\n"
            f"  python pretrain_gpt.py --data-path my-data_text_document {flags} ...\n"
            f"  (or: {alt})")


def _main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--input", nargs="+", required=True,
                        help="jsonl file(s), .gz allowed, globs allowed")
    parser.add_argument("--json-keys", nargs="+", default=["text"],
                        help="fields holding the text (default: text)")
    parser.add_argument("--type", choices=["bpe", "sentencepiece"], default="bpe",
                        help="bpe: byte-level BPE like GPT-2; sentencepiece: a .model file")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--max-documents", type=int, default=None,
                        help="train on the first N documents only")
    parser.add_argument("--max-mb", type=float, default=None,
                        help="train on the first N MB of input only (sentencepiece keeps the "
                             "whole sample in memory)")
    parser.add_argument("--sentencepiece-model-type", default="bpe",
                        choices=["bpe", "unigram", "char", "word"])
    parser.add_argument("--legacy-tokenizer", action="store_true",
                        help="check the files with Megatron-LM's older tokenizer classes and "
                             "print commands that use them (docs/data.md)")
    parser.add_argument("--sentencepiece-threads", type=int, default=4,
                        help="training threads; the model depends on this number, so keep it "
                             "the same to reproduce a model (default 4)")
    args = parser.parse_args(argv)
    start = time.time()
    paths = train_tokenizer(args.input, args.output_dir, args.type, args.vocab_size,
                            args.json_keys, args.max_documents, args.max_mb,
                            args.sentencepiece_model_type, args.sentencepiece_threads)
    from megatron.core.tokenizers import build_tokenizer

    if args.type == "bpe":
        tokenizer = build_tokenizer("GPT2BPETokenizer", vocab_file=paths["vocab.json"],
                                    merge_file=paths["merges.txt"], legacy=args.legacy_tokenizer)
    else:
        tokenizer = build_tokenizer("GPTSentencePieceTokenizer",
                                    tokenizer_model=paths["tokenizer.model"],
                                    legacy=args.legacy_tokenizer)
    print(f"trained a {args.type} tokenizer with {tokenizer.vocab_size} tokens in "
          f"{time.time() - start:.1f} s; wrote {', '.join(sorted(paths.values()))}")
    if tokenizer.vocab_size < args.vocab_size:
        print(f"note: the input supported only {tokenizer.vocab_size} of --vocab-size "
              f"{args.vocab_size} tokens; give more text for a larger vocabulary", file=sys.stderr)
    print(usage_hint(args.type, args.output_dir, args.legacy_tokenizer))


def main(argv: Optional[List[str]] = None) -> int:
    from megatron.cli.guard import run_main
    return run_main(_main, "train_tokenizer.py", argv)


if __name__ == "__main__":
    raise SystemExit(main())
