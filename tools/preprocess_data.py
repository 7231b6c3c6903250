"""Tokenize jsonl documents into Megatron .bin/.idx datasets (Megatron-LM's flags and names).

    python tools/preprocess_data.py --input corpus.jsonl --output-prefix my-gpt2 \
        --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt \
        --append-eod --workers 8

writes my-gpt2_text_document.bin/.idx. See docs/preprocessing.md.
"""

import os
import sys

# Runs from a checkout without installing, as Megatron's tools do.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from megatron.preprocess.options import config_from_args, parse_preprocess_args, TokenizerFromArgs
    from megatron.preprocess.pipeline import PreprocessError, preprocess

    try:
        args = parse_preprocess_args(argv)
        summary = preprocess(config_from_args(args), TokenizerFromArgs(args))
    except (PreprocessError, OSError, ValueError) as err:
        print(f"preprocess_data.py: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("preprocess_data.py: interrupted; no output was written", file=sys.stderr)
        return 130
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
