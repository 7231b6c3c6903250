"""Tokenize jsonl documents into Megatron .bin/.idx datasets (Megatron-LM's flags and names).

    python tools/preprocess_data.py --input corpus.jsonl --output-prefix my-gpt2 \
        --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt \
        --append-eod --workers 8

writes my-gpt2_text_document.bin/.idx. See docs/preprocessing.md. Bad input (a flag, a missing
or unusable file) ends with one line, `preprocess_data.py: error: ...`, and status 2; Ctrl-C with
status 130. Nothing final-named is written in either case.
"""
from typing import List, Optional

from megatron.preprocess.exit_status import run_command

PROG = "preprocess_data.py"


def _main(argv: Optional[List[str]]) -> int:
    from megatron.preprocess.options import TokenizerFromArgs, config_from_args, parse_preprocess_args
    from megatron.preprocess.pipeline import preprocess

    args = parse_preprocess_args(argv)
    summary = preprocess(config_from_args(args), TokenizerFromArgs(args))
    print(summary.describe())
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """The exit status (0; 2 for bad input, printed as one line; 130 for Ctrl-C), returned."""
    return run_command(_main, PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
