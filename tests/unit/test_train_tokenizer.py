"""tools/train_tokenizer.py: trains small vocabularies every matching factory type loads."""
import gzip
import json
import shutil

import pytest

from megatron.core.tokenizers import build_tokenizer
from megatron.cli.corpus import build_corpus
from megatron.cli.train_tokenizer import iter_texts, main, train_tokenizer

SAMPLES = ["def main():\n    print('hello wörld')  # 中文\n", "  Leading spaces\tand tabs\n\n",
           "The quick brown fox; 12345 + 678 = 13023!"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """About 150 KB of standard-library text."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    build_corpus(str(path), max_mb=0.15)
    return path


def test_bpe_files_load_as_gpt2_and_huggingface(corpus, tmp_path):
    out = tmp_path / "bpe"
    paths = train_tokenizer([str(corpus)], str(out), "bpe", vocab_size=600)
    assert sorted(paths) == ["merges.txt", "tokenizer.json", "tokenizer_config.json",
                             "vocab.json"]
    gpt2 = build_tokenizer("GPT2BPETokenizer", vocab_file=paths["vocab.json"],
                           merge_file=paths["merges.txt"])
    hf = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(out))
    assert gpt2.vocab_size == hf.vocab_size == 600
    assert gpt2.eod == hf.eod == gpt2.vocab["<|endoftext|>"]
    for text in SAMPLES:
        ids = gpt2.tokenize(text)
        assert hf.tokenize(text) == ids and gpt2.detokenize(ids) == text
        assert len(ids) < len(text.encode("utf-8"))  # merges learned
    with open(paths["merges.txt"], encoding="utf-8") as f:
        assert f.readline() == "#version: 0.2\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_training_is_deterministic(corpus, tmp_path):
    for kind in ("bpe", "sentencepiece"):
        a = train_tokenizer([str(corpus)], str(tmp_path / f"{kind}1"), kind, vocab_size=500)
        b = train_tokenizer([str(corpus)], str(tmp_path / f"{kind}2"), kind, vocab_size=500)
        for name in a:
            with open(a[name], "rb") as fa, open(b[name], "rb") as fb:
                assert fa.read() == fb.read(), (kind, name)


@pytest.mark.parametrize("legacy", [False, True])
def test_sentencepiece_model_loads_in_all_three_types(corpus, tmp_path, legacy):
    paths = train_tokenizer([str(corpus)], str(tmp_path / "sp"), "sentencepiece", vocab_size=700)
    model = paths["tokenizer.model"]
    gpt = build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=model, legacy=legacy)
    llama = build_tokenizer("Llama2Tokenizer", tokenizer_model=model, legacy=legacy)
    general = build_tokenizer("SentencePieceTokenizer", tokenizer_model=model, legacy=legacy)
    # Legacy SentencePieceTokenizer adds <CLS> <SEP> <EOD> <MASK> <PAD>; the current one nothing.
    assert gpt.vocab_size == 700 and general.vocab_size == 700 + (5 if legacy else 0)
    for text in SAMPLES:
        ids = gpt.tokenize(text)
        assert gpt.detokenize(ids) == text  # no normalization, byte fallback: exact
        assert llama.tokenize(text) == ([llama.bos] if legacy else []) + ids
        assert general.tokenize(text) == ids
    assert (gpt.bos, gpt.eod, gpt.pad) == (1, 2, -1)
    assert general.eod == (700 + 2 if legacy else 2)  # <EOD>, or the model's eos


def test_inputs_gz_glob_and_limits(corpus, tmp_path):
    lines = corpus.read_bytes().splitlines(keepends=True)
    with gzip.open(tmp_path / "part1.jsonl.gz", "wb") as f:
        f.writelines(lines[:3])
    shutil.copy(corpus, tmp_path / "part2.jsonl")
    texts = list(iter_texts([str(tmp_path / "part*")]))
    assert texts[:3] == [json.loads(line)["text"] for line in lines[:3]]
    assert len(texts) == 3 + len(lines)
    assert len(list(iter_texts([str(corpus)], max_documents=2))) == 2
    first_mb = len(lines[0]) / 1e6
    assert len(list(iter_texts([str(corpus)], max_mb=first_mb))) == 1
    both = list(iter_texts([str(corpus)], json_keys=["text", "source"], max_documents=1))
    assert both[1] == json.loads(lines[0])["source"]


def test_errors(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="--input"):
        list(iter_texts([str(tmp_path / "missing*.jsonl")]))
    with pytest.raises(ValueError, match="--json-keys"):
        list(iter_texts([str(corpus)], json_keys=["content"]))
    with pytest.raises(ValueError, match="--vocab-size"):
        train_tokenizer([str(corpus)], str(tmp_path / "x"), "bpe", vocab_size=100)
    with pytest.raises(ValueError, match="--type"):
        train_tokenizer([str(corpus)], str(tmp_path / "x"), "wordpiece")
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())


def test_command_line_prints_next_steps(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    main(["--input", str(corpus), "--type", "bpe", "--vocab-size", "400",
          "--output-dir", str(out), "--max-documents", "20"])
    printed = capsys.readouterr().out
    assert "trained a bpe tokenizer with 400 tokens" in printed
    assert f"--tokenizer-type GPT2BPETokenizer --vocab-file {out}/vocab.json" in printed
    assert f"--tokenizer-type HuggingFaceTokenizer --tokenizer-model {out}" in printed
    assert "--legacy-tokenizer" not in printed
    main(["--input", str(corpus), "--type", "sentencepiece", "--vocab-size", "600",
          "--output-dir", str(tmp_path / "sp"), "--max-documents", "20", "--legacy-tokenizer"])
    printed = capsys.readouterr().out
    # The flag goes into both commands it prints, so preprocessing and training agree.
    assert printed.count("--legacy-tokenizer") == 3
