"""Tokenizer files that cannot be used are refused with the flag and the file named
(megatron.core.errors: DataError for a bad file, MissingFileError for none, ConfigError for a
missing flag), and the tools print that one line instead of a traceback."""
import importlib.util
import json
import os
import shutil

import pytest

from megatron.core.errors import ConfigError, DataError, MissingFileError
from megatron.core.tokenizers import build_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "tokenizers")
VOCAB = os.path.join(FIXTURES, "gpt2_bpe", "vocab.json")
MERGES = os.path.join(FIXTURES, "gpt2_bpe", "merges.txt")


def _gpt2(vocab=VOCAB, merges=MERGES, legacy=False):
    return build_tokenizer("GPT2BPETokenizer", vocab_file=str(vocab), merge_file=str(merges),
                           legacy=legacy)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("content, message", [
    ("", r"--merge-file .*merges\.txt is empty"),
    ("\n\n  \n", r"--merge-file .*merges\.txt is empty"),
    ("#version: 0.2\n", r"--merge-file .*merges\.txt has no merge rules"),
    ("#version: 0.2\nĠ t\nthree parts here\n", r"--merge-file .*merges\.txt: line 3 is "
                                               r"'three parts here'"),
    ("#version: 0.2\nĠt\n", r"--merge-file .*: line 2 is 'Ġt'"),
])
def test_bad_merges_file(tmp_path, content, message, legacy):
    merges = tmp_path / "merges.txt"
    merges.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        _gpt2(merges=merges, legacy=legacy)


def test_merges_that_do_not_fit_the_vocab_and_binary_merges(tmp_path):
    merges = tmp_path / "merges.txt"
    merges.write_text("#version: 0.2\nzzz qqq\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"--vocab-file .* / --merge-file .*do not fit together"):
        _gpt2(merges=merges)
    merges.write_bytes(b"#version\n\xff\xfe\x00 a\n")
    with pytest.raises(DataError, match=r"--merge-file .*not UTF-8"):
        _gpt2(merges=merges)


@pytest.mark.parametrize("content, message", [
    ("", r"could not parse it"),
    ("{}", r"found an empty object"),
    ("[1, 2]", r"found list"),
    ('{"a": 0, "b": "1"}', r"the id of 'b' is '1'"),
    ('{"a": 0, "b": -1}', r"the id of 'b' is -1"),
    ('{"a": 0, "b": 1}', r"no <\|endoftext\|> token"),
    ('{"a": 0,', r"could not parse it"),
])
def test_bad_vocab_json(tmp_path, content, message):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"--vocab-file .*vocab\.json: .*" + message):
        _gpt2(vocab=vocab)


def test_bad_bert_vocab(tmp_path):
    vocab = tmp_path / "vocab.txt"
    for content in (b"", b"a\nb\n", b"\xff\xfe[CLS]\n"):
        vocab.write_bytes(content)
        for name in ("BertWordPieceLowerCase", "BertWordPieceCase"):
            for legacy in (False, True):
                with pytest.raises(DataError, match=r"--vocab-file .*vocab\.txt"):
                    build_tokenizer(name, vocab_file=str(vocab), legacy=legacy)


@pytest.mark.parametrize("content", [b"", b"not a model", bytes(range(256)) * 4])
def test_sentencepiece_model_that_cannot_be_loaded(tmp_path, content):
    model = tmp_path / "tokenizer.model"
    model.write_bytes(content)
    for name in ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer"):
        with pytest.raises(DataError, match=r"--tokenizer-model .*tokenizer\.model: expected a "
                                            r"SentencePiece \.model"):
            build_tokenizer(name, tokenizer_model=str(model))


def test_hugging_face_files_that_cannot_be_loaded(tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(os.path.join(FIXTURES, "hf_llama"), folder)
    (folder / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"--tokenizer-model: .*tokenizer_config\.json is not "
                                        r"valid JSON"):
        build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<nope>"}))
    with pytest.raises(DataError, match=r"names eos_token '<nope>'"):
        build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(folder))
    (folder / "tokenizer.json").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"--tokenizer-model .*could not load"):
        build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(folder))


def test_missing_files_and_flags(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(MissingFileError, match=r"--vocab-file: expected a GPT-2 vocab\.json, "
                                               r"but .*nope\.json does not exist"):
        _gpt2(vocab=missing)
    with pytest.raises(MissingFileError, match=r"--merge-file: .*nope\.json does not exist"):
        _gpt2(merges=missing)
    with pytest.raises(ConfigError, match=r"GPT2BPETokenizer needs --merge-file"):
        build_tokenizer("GPT2BPETokenizer", vocab_file=VOCAB)
    with pytest.raises(MissingFileError, match=r"--tokenizer-model .*no such file or folder"):
        build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"NullTokenizer needs --vocab-size"):
        build_tokenizer("NullTokenizer")


def test_preprocess_data_prints_the_error_on_one_line(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "tool_preprocess_data", os.path.join(REPO, "tools", "preprocess_data.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    (tmp_path / "in.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    (tmp_path / "merges.txt").write_text("", encoding="utf-8")
    code = tool.main(["--input", str(tmp_path / "in.jsonl"), "--output-prefix",
                      str(tmp_path / "out"), "--workers", "1", "--tokenizer-type",
                      "GPT2BPETokenizer", "--vocab-file", VOCAB, "--merge-file",
                      str(tmp_path / "merges.txt")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"--merge-file {tmp_path / 'merges.txt'} is empty" in err
    assert not [name for name in os.listdir(tmp_path) if name.startswith("out")]
    # Megatron-LM's tokenizer flags we do not implement are refused by name, not ignored.
    for flag in (["--tokenizer-special-tokens", "<x>"], ["--tokenizer-sentencepiece-legacy"]):
        code = tool.main(["--input", str(tmp_path / "in.jsonl"), "--output-prefix",
                          str(tmp_path / "out"), "--workers", "1", "--tokenizer-type",
                          "ByteTokenizer", *flag])
        assert code != 0 and f"{flag[0]} " in capsys.readouterr().err
