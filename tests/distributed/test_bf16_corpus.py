"""bf16 training on the built-in corpus (Python standard library text) learns: the loss falls by at
least 0.5 nats over 30 iterations (it starts near ln(1024) = 6.93 with a 1024-id vocabulary)."""
import os
import subprocess
import sys

from tests.harness import run_distributed
from tests.pretrain_runner import run_pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARGIN = 0.5


def _prepare(tmp_path) -> list:
    py = sys.executable
    corpus, tok, prefix = tmp_path / "corpus.jsonl", tmp_path / "tok", tmp_path / "stdlib"
    for argv in ([py, "tools/corpus.py", "--output", corpus, "--max-mb", "1", "--exclude-tests"],
                 [py, "tools/train_tokenizer.py", "--input", corpus, "--type", "bpe", "--vocab-size", "1024",
                  "--output-dir", tok],
                 [py, "tools/preprocess_data.py", "--input", corpus, "--output-prefix", prefix, "--append-eod",
                  "--workers", "1", "--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", tok / "vocab.json",
                  "--merge-file", tok / "merges.txt"]):
        subprocess.run([str(a) for a in argv], cwd=ROOT, check=True, capture_output=True)
    return ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", str(tok / "vocab.json"), "--merge-file",
            str(tok / "merges.txt"), "--data-path", f"{prefix}_text_document", "--split", "100,0,0"]


def _train(rank, world_size, data_flags):
    argv = ("--num-layers 2 --hidden-size 128 --num-attention-heads 4 --ffn-hidden-size 352 --swiglu "
            "--normalization RMSNorm --position-embedding-type rope --disable-bias-linear "
            "--untie-embeddings-and-output-weights --seq-length 128 --max-position-embeddings 128 "
            "--micro-batch-size 8 --global-batch-size 8 --lr 3e-3 --lr-warmup-iters 3 --train-iters 30 "
            "--log-interval 10 --eval-iters 0 --bf16 --num-workers 0 --hidden-dropout 0 "
            "--attention-dropout 0").split()
    return run_pretrain(argv + data_flags)


def test_bf16_loss_falls_on_builtin_corpus(tmp_path):
    record = run_distributed(_train, 1, _prepare(tmp_path))[0]
    first, last = record["loss"][0], sum(record["loss"][-3:]) / 3
    assert last < first - MARGIN, record["loss"]
