"""Write docs/flags.md from the option declarations (megatron/training/arguments/).

    python tools/gen_flags_doc.py           # rewrite docs/flags.md
    python tools/gen_flags_doc.py --check   # exit 1 if docs/flags.md is out of date
"""

import argparse
import os
import sys

from megatron.training.arguments.flags_doc import render_flags_markdown

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "docs", "flags.md")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="Where to write the page.")
    parser.add_argument("--check", action="store_true",
                        help="Only compare; exit 1 when the page is out of date.")
    args = parser.parse_args(argv)
    text = render_flags_markdown()
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as stream:
                current = stream.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{args.output} is out of date: run python tools/gen_flags_doc.py",
                  file=sys.stderr)
            return 1
        return 0
    # Written under a temporary name and renamed, so a failure never leaves half a page.
    temporary = args.output + ".tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
