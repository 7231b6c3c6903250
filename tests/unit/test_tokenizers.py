"""Tokenizer families behind build_tokenizer: Megatron-LM's ids, special tokens, round trips,
errors, and vocabulary padding. Every vocabulary and model is made here, small."""
import json
import re
import types

import pytest

from megatron.core.tokenizers import MegatronTokenizer, build_tokenizer
from megatron.core.tokenizers.gpt2_bpe import byte_to_char
from megatron.training.tokenizer import build_tokenizer as build_from_args
from megatron.training.tokenizer import vocab_size_with_padding

ROUND_TRIP_TEXTS = [
    "Hello, world! The quick brown fox.",
    "def f(x):\n    return x  # two spaces\n\n\n\tTabbed\r\nwindows line",
    "unicode: héllo wörld, ΟΔΟΣ, 中文字符, emoji 😀🚀, zero\u200bwidth, nbsp\u00a0here",
    "   leading and trailing whitespace runs   \n  ",
    "",
    "I'm sure they've said it's 100% true.",
]

# Plain ASCII text built from the test corpus words: what the GPT-2 reference below can split
# with Python's own `re` (\p{L} / \p{N} reduce to [A-Za-z] / [0-9] on ASCII).
TRAINING_TEXT = (
    "The quick brown fox jumps over the lazy dog. It's 2024 and they're training tokenizers; "
    "def main(argv):\n    return 0\n\nclass Tokenizer(object):\n    pass\n"
    "Megatron-LM pretrains language models at scale, with tensor and pipeline parallelism. "
) * 20


# ---------------------------------------------------------------------------------------------
# GPT-2 byte-level BPE

ASCII_GPT2_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+"
                              r"|\s+(?!\S)|\s+")


def _reference_gpt2_ids(vocab, merge_lines, text, pattern=ASCII_GPT2_SPLIT):
    """GPT-2's algorithm, written independently: split, map bytes, merge lowest rank first."""
    ranks = {tuple(line.split()): r for r, line in enumerate(merge_lines)}
    table = byte_to_char()
    ids = []
    for word in pattern.findall(text):
        parts = [table[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            pairs = [(ranks.get((a, b), float("inf")), i) for i, (a, b) in
                     enumerate(zip(parts, parts[1:]))]
            best_rank, _ = min(pairs)
            if best_rank == float("inf"):
                break
            first, second = next(p for p, r in ranks.items() if r == best_rank)
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids.extend(vocab[p] for p in parts)
    return ids


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory):
    """A byte-level BPE trained here, saved in GPT-2's vocab.json / merges.txt format."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TRAINING_TEXT], trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    folder = tmp_path_factory.mktemp("gpt2")
    (folder / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges),
                                       encoding="utf-8")
    return types.SimpleNamespace(vocab=folder / "vocab.json", merges=folder / "merges.txt",
                                 vocab_dict=model["vocab"], merge_lines=merges, folder=folder)


def _gpt2(files, **options):
    return build_tokenizer("GPT2BPETokenizer", vocab_file=str(files.vocab),
                           merge_file=str(files.merges), **options)


def test_gpt2_ids_match_reference_bpe(gpt2_files):
    tok = _gpt2(gpt2_files)
    texts = [TRAINING_TEXT[:500], "Lazy dogs don't jump; 12345 quick  foxes\n\n  do.", "x"]
    for text in texts:
        assert tok.tokenize(text) == _reference_gpt2_ids(
            gpt2_files.vocab_dict, gpt2_files.merge_lines, text)
    assert tok.tokenize(" the") != [tok.vocab[c] for c in "Ġthe"], "merges were not applied"


def test_gpt2_unicode_ids_match_reference_with_regex_module(gpt2_files):
    regex = pytest.importorskip("regex")  # the module Megatron-LM splits with
    pattern = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                            r"|\s+(?!\S)|\s+")
    tok = _gpt2(gpt2_files)
    for text in ROUND_TRIP_TEXTS:
        assert tok.tokenize(text) == _reference_gpt2_ids(
            gpt2_files.vocab_dict, gpt2_files.merge_lines, text, pattern)


def test_gpt2_round_trip_is_exact(gpt2_files):
    tok = _gpt2(gpt2_files)
    for text in ROUND_TRIP_TEXTS:
        ids = tok.tokenize(text)
        assert tok.detokenize(ids) == text
        assert tok.tokenize(tok.detokenize(ids)) == ids
    assert tok.tokenize_batch(ROUND_TRIP_TEXTS) == [tok.tokenize(t) for t in ROUND_TRIP_TEXTS]


def test_gpt2_special_tokens_and_identity(gpt2_files):
    tok = _gpt2(gpt2_files, legacy=True)
    assert tok.eod == tok.eos == gpt2_files.vocab_dict["<|endoftext|>"]
    assert tok.vocab_size == len(gpt2_files.vocab_dict)
    assert tok.inv_vocab[tok.eod] == "<|endoftext|>"
    # Megatron-LM's legacy class encodes the literal text of the eod token as ordinary text.
    assert tok.eod not in tok.tokenize("end<|endoftext|>start")
    with pytest.raises(NotImplementedError, match="pad"):
        tok.pad
    assert json.loads(tok.unique_description) == {
        "class": "_GPT2BPETokenizer",
        "tokenizer_path": [str(gpt2_files.vocab), str(gpt2_files.merges)],
    }
    # Current mode (transformers' GPT-2 behind megatron-core): the text is the eod token.
    current = _gpt2(gpt2_files)
    assert current.tokenize("end<|endoftext|>start") == [
        *tok.tokenize("end"), tok.eod, *tok.tokenize("start")]
    assert (current.eod, current.bos, current.cls, current.sep) == (tok.eod,) * 4
    assert current.pad is None and current.mask is None
    assert current.vocab_size == tok.vocab_size
    assert json.loads(current.unique_description)["tokenizer_path"] == "GPT2BPETokenizer"


def test_gpt2_merges_file_read_like_megatron(gpt2_files, tmp_path):
    """The first line is always skipped (it should be #version), so without the header the
    first merge is lost, exactly as in Megatron-LM."""
    headerless = tmp_path / "merges.txt"
    headerless.write_text("".join(m + "\n" for m in gpt2_files.merge_lines), encoding="utf-8")
    tok = build_tokenizer("GPT2BPETokenizer", vocab_file=str(gpt2_files.vocab),
                          merge_file=str(headerless))
    first = "".join(gpt2_files.merge_lines[0].split())
    reference = _reference_gpt2_ids(gpt2_files.vocab_dict, gpt2_files.merge_lines[1:], first)
    assert tok.tokenize(first) == reference
    assert tok.tokenize(first) != _gpt2(gpt2_files).tokenize(first)


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizer.json

def _save_hf(folder, gpt2_files, config):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from megatron.core.tokenizers.gpt2_bpe import read_merges

    tok = Tokenizer(models.BPE(vocab=gpt2_files.vocab_dict, merges=read_merges(gpt2_files.merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    folder.mkdir(exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_huggingface_matches_gpt2_and_reads_config(gpt2_files, tmp_path):
    folder = _save_hf(tmp_path / "hf", gpt2_files,
                      {"eos_token": {"content": "<|endoftext|>", "special": True},
                       "bos_token": "<|endoftext|>", "pad_token": None})
    hf = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(folder))
    gpt2 = _gpt2(gpt2_files)
    for text in ROUND_TRIP_TEXTS:
        assert hf.tokenize(text) == gpt2.tokenize(text)
        assert hf.detokenize(hf.tokenize(text)) == text
    assert hf.tokenize_batch(ROUND_TRIP_TEXTS) == gpt2.tokenize_batch(ROUND_TRIP_TEXTS)
    assert hf.eod == hf.bos == gpt2.eod and hf.pad is None
    assert hf.vocab_size == gpt2.vocab_size
    # transformers matches special tokens written in the text; so do we.
    assert hf.tokenize("a<|endoftext|>b") == [*gpt2.tokenize("a"), hf.eod, *gpt2.tokenize("b")]
    # The file itself works too, and a bare file falls back to a common eos name.
    bare = _save_hf(tmp_path / "bare", gpt2_files, None)
    assert build_tokenizer("HuggingFaceTokenizer",
                           tokenizer_model=str(bare / "tokenizer.json")).eod == gpt2.eod


def test_huggingface_applies_post_processor_like_transformers(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, "hello": 3, "world": 4}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>"}))
    hf = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path), legacy=True)
    assert hf.tokenize("hello world") == [0, 3, 4]  # a Llama-style file adds its BOS
    assert hf.tokenize_batch(["world", "hello"]) == [[0, 4], [0, 3]]
    assert (hf.bos, hf.eod, hf.pad, hf.vocab_size) == (0, 1, 2, 5)
    # Current mode: megatron-core's tokenize() leaves the post-processor out, unless asked.
    current = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path))
    assert current.tokenize("hello world") == [3, 4]
    assert current.tokenize_batch(["world", "hello"]) == [[4], [3]]
    assert (current.bos, current.eod, current.pad, current.cls, current.sep) == (0, 1, 2, 0, 1)
    included = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path),
                               include_special_tokens=True)
    assert included.tokenize_batch(["world", "hello"]) == [[0, 4], [0, 3]]


def test_huggingface_folder_errors(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json.*SentencePieceTokenizer"):
        build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path))
    with pytest.raises(ValueError, match="--tokenizer-model"):
        build_tokenizer("HuggingFaceTokenizer")
    with pytest.raises(FileNotFoundError, match="--tokenizer-model .*no such file or folder"):
        build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path / "missing"))


# ---------------------------------------------------------------------------------------------
# SentencePiece families

@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    import io

    import sentencepiece as spm

    lines = [line for line in TRAINING_TEXT.split("\n") if line.strip()] + ROUND_TRIP_TEXTS[:4]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=400, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        hard_vocab_limit=False, minloglevel=2)
    path = tmp_path_factory.mktemp("sp") / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def test_sentencepiece_special_tokens_follow_megatron(sp_model):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    n = sp.get_piece_size()
    tok = build_tokenizer("SentencePieceTokenizer", tokenizer_model=str(sp_model),
                          vocab_extra_ids=2, legacy=True)
    # Added after the pieces in Megatron-LM's order; the model's own <s> / </s> are reused and
    # its missing pad (id -1) becomes a new <PAD>.
    assert (tok.cls, tok.sep, tok.eod, tok.mask, tok.pad) == (n, n + 1, n + 2, n + 3, n + 4)
    assert (tok.bos, tok.eos) == (sp.bos_id(), sp.eos_id())
    assert tok.additional_special_tokens_ids == [n + 5, n + 6]
    assert tok.vocab_size == n + 7 and tok.vocab["<extra_id_1>"] == n + 6
    # Special tokens written in the text become their ids; the rest is encoded in pieces.
    text = "fox<EOD>dog<s><extra_id_1>"
    expected = [*sp.encode("fox"), n + 2, *sp.encode("dog"), sp.bos_id(), n + 6]
    assert tok.tokenize(text) == expected
    assert tok.tokenize_batch([text, "fox"]) == [expected, sp.encode("fox")]
    assert tok.detokenize(expected) == "fox <EOD> dog <s>  <extra_id_1> "
    assert json.loads(tok.unique_description)["vocab_extra_ids"] == "2"
    # Current mode: the plain model; those spellings are text, sentinels are not added.
    current = build_tokenizer("SentencePieceTokenizer", tokenizer_model=str(sp_model),
                              vocab_extra_ids=2)
    assert current.tokenize(text) == current.tokenize_batch([text])[0] == sp.encode(text)
    assert current.vocab_size == n and (current.eod, current.pad) == (sp.eos_id(), sp.pad_id())
    with pytest.raises(NotImplementedError, match="cls"):
        current.cls


def test_sentencepiece_round_trips(sp_model):
    for name in ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer"):
        tok = build_tokenizer(name, tokenizer_model=str(sp_model))
        for text in ROUND_TRIP_TEXTS:
            ids = tok.tokenize(text)
            again = tok.tokenize(tok.detokenize(ids))
            assert again == ids, (name, text)
        assert tok.tokenize_batch(ROUND_TRIP_TEXTS) == [tok.tokenize(t) for t in ROUND_TRIP_TEXTS]


def test_gpt_sentencepiece_and_llama2(sp_model):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    gpt = build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=str(sp_model))
    llama = build_tokenizer("Llama2Tokenizer", tokenizer_model=str(sp_model))
    text = "The quick brown fox\n  indented"
    assert gpt.tokenize(text) == sp.encode(text)
    assert gpt.detokenize(gpt.tokenize(text)) == text  # identity normalization + byte fallback
    assert llama.tokenize(text) == sp.encode(text)  # current mode: no bos in front
    legacy_llama = build_tokenizer("Llama2Tokenizer", tokenizer_model=str(sp_model), legacy=True)
    assert legacy_llama.tokenize(text) == [sp.bos_id(), *sp.encode(text)]
    assert legacy_llama.tokenize_batch([text]) == [[sp.bos_id(), *sp.encode(text)]]
    legacy_gpt = build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=str(sp_model),
                                 legacy=True)
    for tok in (gpt, llama, legacy_gpt, legacy_llama):
        assert tok.vocab_size == sp.get_piece_size()
        assert tok.eod == tok.eos == sp.eos_id() and tok.bos == sp.bos_id()
        assert tok.additional_special_tokens_ids is None
        assert tok.tokenize("<EOD>") == tok.tokenize_batch(["<EOD>"])[0]  # no special matching
    for tok in (legacy_gpt, legacy_llama):
        assert (tok.cls, tok.sep, tok.mask) == (-1, -1, -1)
    for tok in (gpt, llama):  # megatron-core has none of them
        for name in ("cls", "sep", "mask"):
            assert getattr(tok, name, None) is None


# ---------------------------------------------------------------------------------------------
# BERT WordPiece

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "un",
              "##aff", "##able", ",", ".", "!", "cafe", "Café", "中", "文", "οδος", "hello", "x",
              "##x", "The", "Quick"]


@pytest.fixture()
def bert_vocab(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    return path


def test_bert_lower_case(bert_vocab):
    tok = build_tokenizer("BertWordPieceLowerCase", vocab_file=str(bert_vocab), legacy=True)
    v = tok.vocab
    words = lambda *ws: [v[w] for w in ws]  # noqa: E731
    assert tok.tokenize("The Quick, brown FOX!") == words("the", "quick", ",", "brown", "fox", "!")
    assert tok.tokenize("unaffable.") == words("un", "##aff", "##able", ".")
    assert tok.tokenize("Café") == words("cafe")  # lower-cased, accent stripped
    assert tok.tokenize("中文") == words("中", "文")  # CJK ideographs stand alone
    assert tok.tokenize("ΟΔΟΣ") == words("οδος")  # final sigma, as Python's lower() writes it
    assert tok.tokenize("hel\x00lo\u200b") == words("hello")  # NUL and format chars dropped
    assert tok.tokenize("zebra") == [tok.vocab["[UNK]"]]
    assert tok.tokenize("x" * 200) == words("x", *["##x"] * 199)
    assert tok.tokenize("x" * 201) == [tok.vocab["[UNK]"]]  # longer than BERT's 200 chars
    assert tok.detokenize(words("un", "##aff", "##able", ".")) == "unaffable."
    ids = tok.tokenize("The quick, brown fox!")
    assert tok.tokenize(tok.detokenize(ids)) == ids
    assert tok.tokenize("[CLS]") == words("[UNK]", "[UNK]", "[UNK]")  # text, in legacy mode
    # Current mode (transformers' BERT): 100 characters at most, special tokens matched.
    current = build_tokenizer("BertWordPieceLowerCase", vocab_file=str(bert_vocab))
    assert current.tokenize("x" * 100) == words("x", *["##x"] * 99)
    assert current.tokenize("x" * 101) == [v["[UNK]"]]
    assert current.tokenize("fox[CLS]the [MASK].") == words("fox", "[CLS]", "the", "[MASK]", ".")
    assert current.tokenize("[cls]") == tok.tokenize("[cls]")  # matched as written only
    assert current.tokenize("The Quick, brown FOX!") == tok.tokenize("The Quick, brown FOX!")
    assert (current.bos, current.eos, current.eod) == (v["[CLS]"], v["[SEP]"], v["[SEP]"])
    assert current.vocab_size == len(BERT_VOCAB)


def test_bert_case_and_special_tokens(bert_vocab):
    tok = build_tokenizer("BertWordPieceCase", vocab_file=str(bert_vocab), vocab_extra_ids=3,
                          legacy=True)
    n = len(BERT_VOCAB)
    assert tok.tokenize("The Quick Café") == [tok.vocab[w] for w in ("The", "Quick", "Café")]
    assert tok.tokenize("FOX") == [tok.vocab["[UNK]"]]
    assert (tok.pad, tok.cls, tok.sep, tok.mask) == (0, 2, 3, 4)
    assert (tok.bos, tok.eos, tok.eod) == (n, n + 1, n + 1)  # [BOS], [EOS] appended
    assert tok.additional_special_tokens_ids == [n + 2, n + 3, n + 4]
    assert tok.vocab_size == n + 5
    assert tok.tokenize_batch(["The fox", ""]) == [tok.tokenize("The fox"), []]
    assert json.loads(tok.unique_description)["lower_case"] == "False"
    # Current mode: megatron-core gives the cased type 100 sentinels, whatever the flag says.
    current = build_tokenizer("BertWordPieceCase", vocab_file=str(bert_vocab), vocab_extra_ids=3)
    assert current.vocab_size == n + 100 and current.eod == current.sep == 3
    assert current.additional_special_tokens_ids == list(range(n, n + 100))
    assert current.tokenize("The<extra_id_7>x") == [tok.vocab["The"], n + 7, tok.vocab["x"]]


def test_bert_vocab_without_specials_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"--vocab-file .*\[CLS\]"):
        build_tokenizer("BertWordPieceLowerCase", vocab_file=str(path))


# ---------------------------------------------------------------------------------------------
# Null and byte tokenizers

def test_null_tokenizer():
    tok = build_tokenizer("NullTokenizer", vocab_size=1000, legacy=True)
    assert tok.tokenize("5 17 999") == [5, 17, 999]
    assert tok.detokenize([5, 17, 999]) == "5 17 999"
    assert (tok.eod, tok.eos, tok.vocab_size) == (1000, 1000, 1001)
    assert tok.offsets([5, 17], "5 17") == [0, 2]
    current = build_tokenizer("NullTokenizer", vocab_size=1000)
    assert (current.eod, current.vocab_size) == (1000, 1001)
    assert current.tokenize("5 17 999") == [5, 17, 999]
    for name in ("eos", "bos", "pad", "cls", "sep", "mask"):  # megatron-core has eod only
        assert getattr(current, name, None) is None
    with pytest.raises(ValueError, match="integer ids"):
        tok.tokenize("hello")
    with pytest.raises(ValueError, match="--vocab-size"):
        build_tokenizer("NullTokenizer")


def test_byte_tokenizer():
    tok = build_tokenizer("ByteTokenizer")
    assert isinstance(tok, MegatronTokenizer)
    for text in ROUND_TRIP_TEXTS:
        ids = tok.tokenize(text)
        assert ids == list(text.encode("utf-8")) and tok.detokenize(ids) == text
    assert (tok.eod, tok.pad, tok.bos, tok.vocab_size) == (256, 257, 258, 259)
    assert tok.detokenize([104, 105, tok.eod]) == "hi<|endoftext|>"
    assert tok.tokenize_batch(["a", "é"]) == [[97], [195, 169]]


# ---------------------------------------------------------------------------------------------
# Factory errors, padding, training-side builder

def test_factory_errors_name_flags_and_files(tmp_path):
    with pytest.raises(ValueError, match=r"--tokenizer-type 'Nope'.*GPT2BPETokenizer"):
        build_tokenizer("Nope")
    with pytest.raises(ValueError, match=r"--tokenizer-type TikTokenizer is not supported"):
        build_tokenizer("TikTokenizer")
    with pytest.raises(ValueError, match=r"needs --vocab-file \(a GPT-2 vocab\.json\)"):
        build_tokenizer("GPT2BPETokenizer", merge_file="m.txt")
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match=r"--vocab-file: expected a GPT-2 vocab\.json"):
        build_tokenizer("GPT2BPETokenizer", vocab_file=missing, merge_file=missing)
    with pytest.raises(FileNotFoundError, match=r"--tokenizer-model: .*is a folder"):
        build_tokenizer("Llama2Tokenizer", tokenizer_model=str(tmp_path))
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="SentencePiece .model"):
        build_tokenizer("SentencePieceTokenizer", tokenizer_model=str(bad))


def test_gpt2_vocab_without_eod_is_rejected(gpt2_files, tmp_path):
    vocab = {k: v for k, v in gpt2_files.vocab_dict.items() if k != "<|endoftext|>"}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match=r"--vocab-file .*<\|endoftext\|>"):
        build_tokenizer("GPT2BPETokenizer", vocab_file=str(path), merge_file=str(gpt2_files.merges))


@pytest.mark.parametrize("tp, expected", [(1, 50304), (2, 50432), (4, 50688), (8, 51200)])
def test_padded_vocab_size(tp, expected):
    assert vocab_size_with_padding(50257, 128, tp) == expected
    assert vocab_size_with_padding(expected, 128, tp) == expected


def test_training_build_tokenizer_sets_padded_size(capsys):
    from tests.flag_defaults import default_args
    args = default_args(tokenizer_type="NullTokenizer", vocab_size=50256, rank=0,
                        make_vocab_size_divisible_by=128, tensor_model_parallel_size=2, padded_vocab_size=None)
    tok = build_from_args(args)
    assert tok.vocab_size == 50257 and args.padded_vocab_size == 50432
    assert " > padded vocab (size: 50257) with 175 dummy tokens (new size: 50432)" in (
        capsys.readouterr().out)
    args.padded_vocab_size = 60000  # e.g. set from a checkpoint: kept
    build_from_args(args)
    assert args.padded_vocab_size == 60000
    capsys.readouterr()
    args.rank, args.padded_vocab_size = 1, None
    build_from_args(args)
    assert capsys.readouterr().out == "" and args.padded_vocab_size == 50432
