"""Pretrain a small Llama-style GPT end to end on built-in text, then let it complete a prompt.

    python examples/quickstart.py            # a few minutes on 2 CPU cores (or a GPU when present)
    python examples/quickstart.py --short    # under a minute: the same steps, tiny sizes (CI)

    megatron-quickstart [--short]            # the same, once the package is installed

Every step is a command a user would type (the package's console scripts; from a clone the tools/
scripts and pretrain_gpt.py do the same), printed before it runs:
  1. megatron-corpus            the Python standard library's sources and docstrings as jsonl (offline)
  2. megatron-train-tokenizer   a byte-level BPE vocabulary trained on that text
  3. megatron-preprocess-data   jsonl -> Megatron's .bin/.idx   (tools/preprocess_data.py)
  4. megatron-pretrain-gpt      training, with Megatron's flags and log lines; saves a checkpoint
  5. megatron-generate          the trained model continues a prompt   (tools/generate_text.py)
Outputs go under --workdir (default ./runs/quickstart).
"""
import argparse
import os
import shlex
import subprocess
import sys
import shutil
import time

# (corpus MB, vocabulary, model flags, iterations) per mode.
SIZES = {
    "cpu": (8, 4096, "--num-layers 4 --hidden-size 256 --num-attention-heads 8 --num-query-groups 4 "
                     "--ffn-hidden-size 704 --seq-length 256 --micro-batch-size 8 --global-batch-size 16", 150),
    "gpu": (30, 8192, "--num-layers 8 --hidden-size 512 --num-attention-heads 8 --num-query-groups 4 "
                      "--ffn-hidden-size 1408 --seq-length 512 --micro-batch-size 16 --global-batch-size 32 --bf16",
            600),
    "short": (1, 1024, "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --num-query-groups 2 "
                       "--ffn-hidden-size 176 --seq-length 128 --micro-batch-size 4 --global-batch-size 8", 30),
}
LLAMA_STYLE = ("--group-query-attention --swiglu --normalization RMSNorm --position-embedding-type rope "
               "--disable-bias-linear --untie-embeddings-and-output-weights --hidden-dropout 0 "
               "--attention-dropout 0")
PROMPT = "def fibonacci(n):\n    "


# Each step's console script, and the module that runs it when the scripts are not on PATH.
COMMANDS = {
    "corpus": ("megatron-corpus", "megatron.cli.corpus"),
    "tokenizer": ("megatron-train-tokenizer", "megatron.cli.train_tokenizer"),
    "preprocess": ("megatron-preprocess-data", "megatron.preprocess.cli"),
    "pretrain": ("megatron-pretrain-gpt", "megatron.training.recipes.gpt"),
    "generate": ("megatron-generate", "megatron.cli.generate"),
}


def command(step: str):
    """(what to run, how to show it): the console script, else ``python -m`` its module."""
    script, module = COMMANDS[step]
    found = shutil.which(script)
    if found:
        return [found], [script]
    return [sys.executable, "-m", module], ["python", "-m", module]


def run(title: str, step: str, args) -> None:
    args = [str(a) for a in args]
    argv, shown = command(step)
    print(f"\n== {title}\n$ {' '.join(shlex.quote(a) for a in shown + args)}", flush=True)
    start = time.time()
    proc = subprocess.run(argv + args)
    if proc.returncode != 0:
        raise SystemExit(f"quickstart: step '{title}' failed with status {proc.returncode} (its output is above)")
    print(f"   ({time.time() - start:.1f} s)", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="tiny sizes, a few dozen iterations")
    parser.add_argument("--workdir", default=os.path.join("runs", "quickstart"),
                        help="where the corpus, tokenizer, data and checkpoint go (default: %(default)s)")
    parser.add_argument("--train-iters", type=int, default=None, help="override the number of iterations")
    opts = parser.parse_args(argv)

    import torch
    mode = "short" if opts.short else ("gpu" if torch.cuda.is_available() else "cpu")
    corpus_mb, vocab, model_flags, iters = SIZES[mode]
    iters = opts.train_iters or iters
    work = os.path.abspath(opts.workdir)
    corpus, tok, data = (os.path.join(work, "corpus.jsonl"), os.path.join(work, "tokenizer"),
                         os.path.join(work, "data", "stdlib"))
    ckpt = os.path.join(work, "checkpoints")
    print(f"quickstart ({mode}): Llama-style GPT on the Python standard library's own text, in {work}")

    run("1/5 corpus: the Python standard library's text as jsonl", "corpus",
        ["--output", corpus, "--max-mb", corpus_mb, "--exclude-tests"])
    run(f"2/5 tokenizer: byte-level BPE with {vocab} ids", "tokenizer",
        ["--input", corpus, "--type", "bpe", "--vocab-size", vocab, "--output-dir", tok])
    tokenizer_flags = ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", os.path.join(tok, "vocab.json"),
                       "--merge-file", os.path.join(tok, "merges.txt")]
    run("3/5 preprocess: jsonl -> .bin/.idx", "preprocess",
        ["--input", corpus, "--output-prefix", data, "--append-eod", "--workers", "2", *tokenizer_flags])
    model = (model_flags + " " + LLAMA_STYLE).split()
    seq = model[model.index("--seq-length") + 1]
    train = [f"--train-iters={iters}", "--lr=2e-3", "--min-lr=2e-4", "--lr-warmup-iters=10",
             "--lr-decay-style=cosine", "--weight-decay=0.1", "--clip-grad=1.0", "--seed=1234",
             f"--data-path={data}_text_document", "--split=98,2,0", f"--log-interval={max(iters // 15, 1)}",
             f"--eval-interval={iters}", "--eval-iters=4", f"--save={ckpt}", f"--max-position-embeddings={seq}"]
    if os.path.isdir(ckpt):
        shutil.rmtree(ckpt)  # a fresh run each time (pretraining would otherwise resume)
    run(f"4/5 pretrain: {iters} iterations (watch 'lm loss' fall)", "pretrain", [*model, *tokenizer_flags, *train])
    # The checkpoint holds the model's shape and its tokenizer: generation needs no model flags.
    run("5/5 generate: the trained model continues a prompt", "generate",
        ["--load", ckpt, "--prompt", PROMPT, "--max-new-tokens", 48 if not opts.short else 16,
         "--temperature", 0.7, "--top-k", 20])
    print("\ndone: the checkpoint is in", ckpt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
