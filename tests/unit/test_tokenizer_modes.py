"""Current (default) and legacy (--legacy-tokenizer) ids of every tokenizer family, on documents
full of the spellings of special and control tokens.

Two oracles, neither of them our code:
* megatron-core 0.16.1 itself: tests/fixtures/tokenizers/expected_mcore_0_16.json holds the
  ids, special ids, vocab sizes and identifiers its ``build_tokenizer(args)`` gave on the tiny
  tokenizer files next to it (make_tokenizer_reference.py wrote both);
* the library's plain call (sentencepiece's ``encode``, tokenizers' ``encode``), with special
  tokens parsed only where Megatron-LM parses them.
Each is checked through ``tokenize``, ``tokenize_batch`` (the word-cached paths) and the
.bin/.idx that tools/preprocess_data.py writes.
"""
import importlib.util
import json
import os
import types

import pytest
import sentencepiece as spm
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.training.tokenizer import build_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "tokenizers")
with open(os.path.join(FIXTURES, "expected_mcore_0_16.json"), encoding="utf-8") as _f:
    REFERENCE = json.load(_f)
DOCUMENTS = REFERENCE["documents"]
# More spellings, and the same texts run together (cache hits, specials at word joints).
MORE = ["<s><s></s></s>", "a<|endoftext|><|endoftext|>b", "[SEP][SEP]x", "<EOD> <EOD>",
        "<extra_id_0><extra_id_0>", "<unk>" * 5, " <s> ", "\u2581<s>\u2581"]
TEXTS = DOCUMENTS + MORE + [" ".join(DOCUMENTS), "".join(MORE)]

SP_TYPES = ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer")
# Every family, with its files (relative to FIXTURES, as the reference was made).
FAMILIES = {
    "GPT2BPETokenizer": dict(vocab_file="gpt2_bpe/vocab.json", merge_file="gpt2_bpe/merges.txt"),
    "HuggingFaceTokenizer-folder": dict(tokenizer_model="hf_gpt2"),
    "HuggingFaceTokenizer-llama": dict(tokenizer_model="hf_llama"),
    "HuggingFaceTokenizer-file": dict(tokenizer_model="hf_llama/tokenizer.json"),
    **{f"{t}-{m}": dict(tokenizer_model=f"{m}/tokenizer.model")
       for t in SP_TYPES for m in ("sp_bpe", "sp_unigram")},
    "BertWordPieceLowerCase": dict(vocab_file="bert/vocab.txt"),
    "BertWordPieceCase": dict(vocab_file="bert/vocab.txt"),
    "ByteTokenizer": {},
}


@pytest.fixture(autouse=True)
def in_fixture_folder(monkeypatch):
    monkeypatch.chdir(FIXTURES)  # relative paths, as in the reference's identifiers


def tokenizer_type(case):
    return case.split("-")[0]


def make_args(case, legacy=False, **flags):
    """Megatron's tokenizer flags at their defaults, then the case's files and `flags`."""
    args = types.SimpleNamespace(
        tokenizer_type=tokenizer_type(case), vocab_file=None, merge_file=None,
        tokenizer_model=None, vocab_size=None, vocab_extra_ids=0, legacy_tokenizer=legacy,
        tokenizer_hf_include_special_tokens=False, tokenizer_hf_use_fast=False,
        trust_remote_code=False, rank=1, make_vocab_size_divisible_by=128,
        tensor_model_parallel_size=1, padded_vocab_size=None)
    for key, value in {**FAMILIES.get(case, {}), **flags}.items():
        setattr(args, key, value)
    return args


def attribute(tok, name):
    try:
        return getattr(tok, name)
    except (AttributeError, NotImplementedError, NameError):
        return "raises"


# ---- megatron-core 0.16.1's answers ---------------------------------------------------------

@pytest.mark.parametrize("case", sorted(REFERENCE["cases"]))
def test_current_mode_matches_megatron_core(case):
    expected = REFERENCE["cases"][case]
    tok = build_tokenizer(make_args(case, **expected["flags"]))
    documents = (REFERENCE["null_documents"] if tokenizer_type(case) == "NullTokenizer"
                 else DOCUMENTS)
    assert [tok.tokenize(text) for text in documents] == expected["ids"]
    assert tok.tokenize_batch(documents) == expected["ids"]
    assert tok.tokenize_batch(documents * 3) == expected["ids"] * 3  # the cache, once filled
    assert tok.vocab_size == expected["vocab_size"]
    assert dict(tok.unique_identifiers) == expected["unique_identifiers"]
    names = ("eod", "bos", "eos", "pad", "cls", "sep", "mask")
    ours = {name: attribute(tok, name) for name in names}
    theirs = {n: "raises" if isinstance(expected[n], dict) else expected[n] for n in names}
    if case == "HuggingFaceTokenizer-file":
        # For a bare file path transformers 5 reads no config file, so megatron-core has no
        # special ids at all (and --append-eod cannot work); we read the configs beside the
        # file, giving the folder's ids (docs/data.md says so).
        assert all(theirs[n] in (None, "raises") for n in names)
        folder = build_tokenizer(make_args("HuggingFaceTokenizer-llama"))
        theirs = {name: attribute(folder, name) for name in names}
    assert ours == theirs


# ---- the library's plain call ---------------------------------------------------------------

def _megatron_legacy_scan(sp, specials, text):
    """Megatron-LM's legacy SentencePieceTokenizer, written independently: repeatedly take the
    special token found earliest (the first listed on ties) and encode the text before it."""
    ids, start = [], 0
    while True:
        found = [(text.find(t, start), i, t) for i, t in enumerate(specials)]
        found = [f for f in found if f[0] >= 0]
        if not found:
            return ids + sp.encode(text[start:])
        at, _, token = min(found)
        ids += sp.encode(text[start:at]) + [specials[token]]
        start = at + len(token)


def _bert_library(lower, legacy):
    """transformers' BERT pipeline from tokenizers' own parts; the legacy one matches nothing
    in the text and allows Google BERT's 200-character words."""
    with open("bert/vocab.txt", encoding="utf-8") as f:
        vocab = {line.strip(): i for i, line in enumerate(f)}
    sentinels = [] if legacy or lower else [f"<extra_id_{i}>" for i in range(100)]
    for token in sentinels:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]",
                                     max_input_chars_per_word=200 if legacy else 100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lower)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if not legacy:
        tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sentinels])
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def library_call(case, legacy, include_special_tokens=False):
    """text -> ids, by the library as Megatron-LM calls it in that mode."""
    kind, files = tokenizer_type(case), FAMILIES[case]
    if kind == "GPT2BPETokenizer":
        if legacy:  # no special token at all: the same BPE without added tokens
            tok = Tokenizer.from_file("hf_gpt2/tokenizer.json")
            plain = Tokenizer(models.BPE(*models.BPE.read_file(*files.values())))
            plain.pre_tokenizer = tok.pre_tokenizer
            return lambda text: plain.encode(text, add_special_tokens=False).ids
        tok = Tokenizer.from_file("hf_gpt2/tokenizer.json")
        return lambda text: tok.encode(text, add_special_tokens=False).ids
    if kind == "HuggingFaceTokenizer":
        path = files["tokenizer_model"]
        tok = Tokenizer.from_file(path if path.endswith(".json") else f"{path}/tokenizer.json")
        with_post_processor = legacy or include_special_tokens
        return lambda text: tok.encode(text, add_special_tokens=with_post_processor).ids
    if kind in SP_TYPES:
        sp = spm.SentencePieceProcessor(model_file=files["tokenizer_model"])
        if legacy and kind == "Llama2Tokenizer":
            return lambda text: [sp.bos_id()] + sp.encode(text)
        if legacy and kind == "SentencePieceTokenizer":
            n = sp.get_piece_size()
            specials, added = {}, 0
            for token in ("<CLS>", "<SEP>", "<EOD>", "<MASK>"):
                specials[token] = sp.piece_to_id(token) if sp.piece_to_id(token) != sp.unk_id() \
                    else n + added
                added += specials[token] >= n
            for which, name in ((sp.pad_id(), "<PAD>"), (sp.bos_id(), "<BOS>"),
                                (sp.eos_id(), "<EOS>")):
                if which >= 0:
                    specials[sp.id_to_piece(which)] = which
                else:  # the model has no such piece: a new id
                    specials[name] = n + added
                    added += 1
            return lambda text: _megatron_legacy_scan(sp, specials, text)
        return lambda text: sp.encode(text)
    if kind.startswith("BertWordPiece"):
        return _bert_library(kind == "BertWordPieceLowerCase", legacy)
    assert kind == "ByteTokenizer"
    return lambda text: list(text.encode("utf-8"))


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
@pytest.mark.parametrize("case", sorted(FAMILIES))
def test_special_spellings_tokenize_as_the_library_does(case, legacy):
    tok = build_tokenizer(make_args(case, legacy=legacy))
    call = library_call(case, legacy)
    expected = [call(text) for text in TEXTS]
    assert [tok.tokenize(text) for text in TEXTS] == expected
    assert tok.tokenize_batch(TEXTS) == expected
    assert tok.tokenize_batch(TEXTS[::-1] + TEXTS) == expected[::-1] + expected


def test_hf_include_special_tokens_flag():
    tok = build_tokenizer(make_args("HuggingFaceTokenizer-llama",
                                    tokenizer_hf_include_special_tokens=True))
    expected = [library_call("HuggingFaceTokenizer-llama", False, True)(t) for t in TEXTS]
    assert tok.tokenize_batch(TEXTS) == expected and expected[0][0] == tok.bos


def test_null_tokenizer_refuses_text_in_both_modes():
    for legacy in (False, True):
        tok = build_tokenizer(make_args("NullTokenizer", legacy=legacy, vocab_size=1000))
        assert tok.tokenize_batch(["5 17", "0"]) == [[5, 17], [0]]
        with pytest.raises(ValueError, match="integer ids"):
            tok.tokenize("<s> 5")


# ---- the preprocessing path and the training side -------------------------------------------

def _preprocess_tool():
    spec = importlib.util.spec_from_file_location(
        "tool_preprocess_data", os.path.join(REPO, "tools", "preprocess_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flags(case, legacy):
    argv = ["--tokenizer-type", tokenizer_type(case)]
    for key, value in FAMILIES[case].items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv + (["--legacy-tokenizer"] if legacy else [])


def _documents_of(prefix):
    dataset = IndexedDataset(prefix)
    bounds = dataset.document_indices
    return [[t for s in range(bounds[d], bounds[d + 1]) for t in dataset[s].tolist()]
            for d in range(len(bounds) - 1)]


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
def test_preprocess_data_writes_the_library_ids(tmp_path, legacy):
    """tools/preprocess_data.py (two workers) writes each family's library ids and eod; the
    training side, from the same flags, has the same eod."""
    from megatron.training.arguments import parse_args

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    tool = _preprocess_tool()
    for case in sorted(FAMILIES):
        flags = _flags(case, legacy)
        prefix = tmp_path / case
        code = tool.main(["--input", str(jsonl), "--output-prefix", str(prefix), "--workers",
                          "2", "--append-eod", "--chunk-bytes", "300", *flags])
        assert code == 0, case
        training = build_tokenizer(parse_args(argv=flags))
        call = library_call(case, legacy)
        expected = [ids + [training.eod] if ids else [] for ids in map(call, TEXTS)]
        assert _documents_of(f"{prefix}_text_document") == expected, case


def test_preprocessing_and_training_agree_on_eod_for_the_same_flags():
    from megatron.preprocess.options import TokenizerFromArgs, parse_preprocess_args
    from megatron.training.arguments import parse_args

    eods = {}
    for case in sorted(FAMILIES):
        for legacy in (False, True):
            flags = _flags(case, legacy)
            preprocessing = TokenizerFromArgs(parse_preprocess_args(
                ["--input", "x.jsonl", "--output-prefix", "x", "--workers", "1", *flags]))()
            training = build_tokenizer(parse_args(argv=flags))
            assert preprocessing.eod == training.eod, (case, legacy)
            assert preprocessing.legacy == training.legacy == (legacy and case != "ByteTokenizer")
            eods[case, legacy] = training.eod
    # The flag does change eod where Megatron-LM's two systems differ.
    assert eods["SentencePieceTokenizer-sp_unigram", True] != eods[
        "SentencePieceTokenizer-sp_unigram", False]
    assert eods["BertWordPieceCase", True] != eods["BertWordPieceCase", False]
