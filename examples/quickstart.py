#!/usr/bin/env python
"""Pretrain a small Llama-style GPT end to end on built-in text, then let it complete a prompt.

    python examples/quickstart.py            # a few minutes on 2 CPU cores (or a GPU when present)
    python examples/quickstart.py --short    # under a minute: the same steps, tiny sizes (CI)

Every step is the command a user would type, printed before it runs:
  1. tools/corpus.py           the Python standard library's sources and docstrings as jsonl (offline)
  2. tools/train_tokenizer.py  a byte-level BPE vocabulary trained on that text
  3. tools/preprocess_data.py  jsonl -> Megatron's .bin/.idx
  4. pretrain_gpt.py           training, with Megatron's flags and log lines; saves a checkpoint
  5. tools/generate_text.py    the trained model continues a prompt
Outputs go under --workdir (default runs/quickstart).
"""
import argparse
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def run(step: str, argv, env=None) -> None:
    print(f"\n== {step}\n$ {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    start = time.time()
    subprocess.run(argv, check=True, cwd=ROOT, env=env)
    print(f"   ({time.time() - start:.1f} s)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="tiny sizes, a few dozen iterations")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "quickstart"))
    parser.add_argument("--train-iters", type=int, default=None, help="override the number of iterations")
    opts = parser.parse_args()

    import torch
    mode = "short" if opts.short else ("gpu" if torch.cuda.is_available() else "cpu")
    corpus_mb, vocab, model_flags, iters = SIZES[mode]
    iters = opts.train_iters or iters
    work = os.path.abspath(opts.workdir)
    corpus, tok, data = (os.path.join(work, "corpus.jsonl"), os.path.join(work, "tokenizer"),
                         os.path.join(work, "data", "stdlib"))
    ckpt = os.path.join(work, "checkpoints")
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(f"quickstart ({mode}): Llama-style GPT on the Python standard library's own text, in {work}")

    run("1/5 corpus: the Python standard library's text as jsonl",
        [py, "tools/corpus.py", "--output", corpus, "--max-mb", str(corpus_mb), "--exclude-tests"], env)
    run(f"2/5 tokenizer: byte-level BPE with {vocab} ids",
        [py, "tools/train_tokenizer.py", "--input", corpus, "--type", "bpe", "--vocab-size", str(vocab),
         "--output-dir", tok], env)
    tokenizer_flags = ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", os.path.join(tok, "vocab.json"),
                       "--merge-file", os.path.join(tok, "merges.txt")]
    run("3/5 preprocess: jsonl -> .bin/.idx",
        [py, "tools/preprocess_data.py", "--input", corpus, "--output-prefix", data, "--append-eod",
         "--workers", "2", *tokenizer_flags], env)
    model = (model_flags + " " + LLAMA_STYLE).split()
    seq = model[model.index("--seq-length") + 1]
    train = [f"--train-iters={iters}", "--lr=2e-3", "--min-lr=2e-4", "--lr-warmup-iters=10",
             "--lr-decay-style=cosine", "--weight-decay=0.1", "--clip-grad=1.0", "--seed=1234",
             f"--data-path={data}_text_document", "--split=98,2,0", f"--log-interval={max(iters // 15, 1)}",
             f"--eval-interval={iters}", "--eval-iters=4", f"--save={ckpt}", f"--max-position-embeddings={seq}"]
    if os.path.isdir(ckpt):
        import shutil
        shutil.rmtree(ckpt)  # a fresh run each time (pretrain_gpt.py would otherwise resume)
    run(f"4/5 pretrain: {iters} iterations (watch 'lm loss' fall)",
        [py, "pretrain_gpt.py", *model, *tokenizer_flags, *train], env)
    model_only = [a for i, a in enumerate(model)  # the batch sizes are training flags
                  if not a.endswith("batch-size") and not (i > 0 and model[i - 1].endswith("batch-size"))]
    run("5/5 generate: the trained model continues a prompt",
        [py, "tools/generate_text.py", *model_only, *tokenizer_flags, f"--max-position-embeddings={seq}",
         "--load", ckpt, "--prompt", PROMPT, "--max-new-tokens", "48" if not opts.short else "16",
         "--temperature", "0.7", "--top-k", "20"], env)
    print("\ndone: the checkpoint is in", ckpt)


if __name__ == "__main__":
    main()
