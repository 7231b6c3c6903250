"""Word-cached batch encoding (word_cache.py, byte_level_words.py, sentencepiece_words.py):
``tokenize_batch`` must give exactly the ids of the plain path (``tokenize``, which does not
use the cache) on any text, and must stay on the plain path where that is not guaranteed.
Every tokenizer is trained here, small, on standard-library text."""
import json
import pickle
import random
import sys

import pytest
import sentencepiece as spm
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors

from megatron.core.tokenizers import build_tokenizer
from megatron.core.tokenizers.byte_level_words import ByteLevelWordEncoder
from megatron.core.tokenizers.gpt2_split import Gpt2WordSplitter
from megatron.core.tokenizers.gpt2_bpe import byte_to_char
from megatron.core.tokenizers.huggingface import HuggingFaceTokenizer
from megatron.core.tokenizers.sentencepiece_words import SentencePieceWordEncoder
from megatron.core.tokenizers.word_cache import WordCache
from megatron.cli.corpus import build_corpus
from megatron.cli.train_tokenizer import iter_texts, train_bpe, train_sentencepiece

ADVERSARIAL = [
    "", " ", "  ", "\n", "\t", "\r\n", " \r\n \r\n", "a", " a", "a ", "  a  ", "   ",
    "Hello, world! The quick brown fox.",
    "I'm sure they've said it's 100% true; we'll see, you'd know. DON'T SHOUT'S",
    "'s 't 're 've 'm 'll 'd ''s ' '' ''' 'S'T'RE'VE'M'LL'D x's y'all",
    "x\x00y\x01\x1c\x1d\x1e\x1f z \x7f", "line\u2028sep\u2029para\x85nel \x0b\x0c",
    "nbsp\u00a0here\u3000ideo\u2003em\u200bzw\u200d\u2060 \u180e",
    "emoji 😀🚀 👨\u200d👩\u200d👧 flags 🇫🇷🇩🇪 skin 👍🏽",
    "combining e\u0301 a\u0308 \u0301start", "中文字符，日本語のテキスト、한국어 ภาษาไทย",
    "ΟΔΟΣ ελληνικά Русский עברית العربية हिन्दी",
    "numbers 1234567890 ²³ ½ Ⅻ ١٢٣ ０１２ 3.14e-10 0x1F",
    "fullwidth ＡＢＣ ﬁ ligature ㈱ ① ™ …", "\ufeffbom \ufffd replacement \uffff",
    "tabs\t\tand  spaces   mixed \t \n\n\n   ", "    indented code\n        deeper\n\n",
    "trailing spaces   ", "mixed\r\nCRLF\r\n\r\nlines\r", "\t\n\x0b\x0c\r ",
    "!!!???...,,,;;  --==>> <<", "a" * 5000, "α" * 3000, "😀" * 1000, "word " * 2000,
    "x" * 20000 + " y", "0" * 3000, " " * 300 + "z", "\n" * 200,
    "<|endoftext|>", "text <|endoftext|> more<|endoftext|>",
    "<EOD><s></s><unk><CLS>[SEP]<MASK> <pad>", "<extra_id_0> x <extra_id_1>",
    "\u2581 literal lower block \u2581\u2581x\u2581", "def f(x):\n    return x  # comment\n",
]

# Pieces for random texts: scripts, digits, punctuation, every kind of whitespace.
FUZZ_PIECES = [
    "a", "Z", "é", "ß", "Ω", "я", "中", "日", "한", "ก", "ع", "ש", "ह", "😀", "🇫🇷", "\u0301",
    "0", "7", "²", "½", "٣", "'", "'s", "'ll", "'D", '"', ".", ",", "-", "_", "#", "(", ")",
    " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\x85", "\x0b", "\x1c",
    "\u2581", "<|endoftext|>", "<EOD>", "<s>", "the", " the", "ing", "return", "    ",
]


def fuzz_texts(count, seed=1234):
    rng = random.Random(seed)
    return ["".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(0, 40)))
            for _ in range(count)]


def mostly_ascii_texts(count, seed=99):
    """Lines of ASCII code and prose with a rare non-ASCII character: the texts whose
    non-ASCII lines are cut apart from the rest (gpt2_split.py)."""
    rng = random.Random(seed)
    ascii_pieces = ["x", "def", " f", "(a)", ":", " ", "  ", "\t", "\n", "\n\n", " \n", "\t\n",
                    "'s", "'", "1", "42", "#", " ==", "\r\n", "\x1c", ".\n"]
    rare = ["é", "\u00a0", "\u3000", "中", "😀", "\u2028", "\x85", "²"]
    texts = []
    for _ in range(count):
        pieces = [rng.choice(ascii_pieces) for _ in range(rng.randint(1, 120))]
        for _ in range(rng.randint(1, 3)):
            pieces.insert(rng.randint(0, len(pieces)), rng.choice(rare))
        texts.append("".join(pieces))
    return texts


def assert_same_as_plain(tokenizer, texts):
    plain = [tokenizer.tokenize(text) for text in texts]
    cached = tokenizer.tokenize_batch(texts)
    for text, want, got in zip(texts, plain, cached):
        assert got == want, f"ids differ for {text[:80]!r}"
    # Again, now that every word is remembered.
    assert tokenizer.tokenize_batch(texts) == plain


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """About 2 MB of standard-library text (code and documentation)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    build_corpus(str(path), max_mb=2.0)
    return list(iter_texts([str(path)]))


@pytest.fixture(scope="module")
def bpe_dir(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    for name, content in train_bpe(corpus[:150], vocab_size=3000).items():
        (folder / name).write_bytes(content)
    return folder


@pytest.fixture(scope="module")
def sp_model(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("sp") / "tokenizer.model"
    files = train_sentencepiece(corpus[:60], vocab_size=2000, threads=1)
    path.write_bytes(files["tokenizer.model"])
    return path


def gpt2(bpe_dir):
    return build_tokenizer("GPT2BPETokenizer", vocab_file=str(bpe_dir / "vocab.json"),
                           merge_file=str(bpe_dir / "merges.txt"))


# ---- the cache itself ------------------------------------------------------------------------

def test_word_cache_is_bounded_and_exact():
    calls = []

    def encode_words(words):
        calls.append(list(words))
        return [[len(w), ord(w[0]) * 1000, 0] for w in words]  # ids past 2**16 too

    cache = WordCache(encode_words, max_words=4)
    batches = [[["ab", "c", "ab"], [], ["d"]], [["e", "f", "g", "ab"]], [["h"], ["ab", "h"]]]
    for batch in batches:
        got = cache.ids_per_text(batch)
        want = [[i for w in words for i in (len(w), ord(w[0]) * 1000, 0)] for words in batch]
        assert got == want
        # Emptied at the start of a batch once full: at most 4 + one batch's new words.
        assert len(cache) <= 4 + len({w for words in batch for w in words})
    assert sorted(calls[0]) == ["ab", "c", "d"]  # each new word once, in one call per batch
    assert sorted(calls[1]) == ["e", "f", "g"]
    assert sorted(calls[2]) == ["ab", "h"]  # 6 words >= 4 at the third batch: emptied first
    assert len(cache) == 2
    with pytest.raises(ValueError, match="max_words"):
        WordCache(encode_words, max_words=0)


# ---- GPT-2 byte-level BPE ------------------------------------------------------------------

def test_gpt2_adversarial_and_fuzz(bpe_dir):
    tokenizer = gpt2(bpe_dir)
    assert_same_as_plain(tokenizer, ADVERSARIAL + fuzz_texts(1500) + mostly_ascii_texts(500))
    assert isinstance(tokenizer._word_encoder, ByteLevelWordEncoder)  # the cached path ran


def test_gpt2_corpus(bpe_dir, corpus):
    tokenizer = gpt2(bpe_dir)
    assert_same_as_plain(tokenizer, corpus)
    assert len(tokenizer._word_encoder._cache) > 1000


def test_gpt2_lone_surrogate_fails_like_the_plain_path(bpe_dir):
    tokenizer = gpt2(bpe_dir)
    with pytest.raises(Exception):
        tokenizer.tokenize("bad \ud800 text")
    with pytest.raises(Exception):
        tokenizer.tokenize_batch(["fine", "bad \ud800 text"])


def _disagreeing_letter():
    """A character that Python's `regex` and the tokenizers library classify differently
    as a letter (their Unicode versions differ), or None."""
    import regex

    library = normalizers.Replace(Regex(r"\p{L}"), "\x00").normalize_str
    for code in [0x088F, 0x0C5C, 0x0CDC, 0xA7CE, 0xA7CF, 0x10940, 0x10D50, 0x16D40]:
        char = chr(code)
        if (library(char) == "\x00") != bool(regex.fullmatch(r"\p{L}", char)):
            return char
    return None


def test_gpt2_characters_the_engines_disagree_on_take_the_plain_path(tmp_path):
    char = _disagreeing_letter()
    if char is None:
        pytest.skip("regex and tokenizers agree on every letter checked")
    # A vocabulary where cutting "aXa" as one word or as three gives different ids.
    table = byte_to_char()
    symbols = [table[b] for b in char.encode("utf-8")]
    vocab = {table[b]: b for b in range(256)}
    merges, merged = [], symbols[0]
    for symbol in symbols[1:]:
        merges.append((merged, symbol))
        merged += symbol
    merges.append(("a", merged))
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tokenizer = build_tokenizer("GPT2BPETokenizer", vocab_file=str(tmp_path / "vocab.json"),
                                merge_file=str(tmp_path / "merges.txt"))
    text = f"a{char}a"
    assert_same_as_plain(tokenizer, [text, "aa " + text, "plain ascii"])
    splitter = tokenizer._word_encoder._splitter
    assert splitter.split(text) is None and char in splitter._disagreed
    assert splitter.split("aé a") == ["aé", " a"]


def test_gpt2_without_regex_package(bpe_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "regex", None)  # import regex now raises ImportError
    tokenizer = gpt2(bpe_dir)
    assert_same_as_plain(tokenizer, ADVERSARIAL + fuzz_texts(300))
    splitter = tokenizer._word_encoder._splitter
    assert splitter.split("naïve") is None and splitter.split("ascii only") == ["ascii", " only"]


def test_tokenizers_pickle_before_and_after_use(bpe_dir, sp_model):
    """Spawned workers get pickled tokenizers: the recipe travels, not the words."""
    for tokenizer in (gpt2(bpe_dir), build_tokenizer("Llama2Tokenizer",
                                                     tokenizer_model=str(sp_model))):
        fresh = pickle.loads(pickle.dumps(tokenizer))
        assert fresh.tokenize_batch(["naïve text"]) == [tokenizer.tokenize("naïve text")]
        assert fresh._word_encoder is not None
        tokenizer.tokenize_batch(["warm the cache up", "naïve"])
        copy = pickle.loads(pickle.dumps(tokenizer))
        assert len(copy._word_encoder._cache) < len(tokenizer._word_encoder._cache)
        assert copy.tokenize_batch(["naïve text"]) == [tokenizer.tokenize("naïve text")]


# ---- HuggingFaceTokenizer --------------------------------------------------------------------

def _hf_folder(bpe_dir, tmp_path, edit=None, **options):
    tokenizer = Tokenizer.from_file(str(bpe_dir / "tokenizer.json"))
    if edit is not None:
        edit(tokenizer)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    config = (bpe_dir / "tokenizer_config.json").read_bytes()
    (tmp_path / "tokenizer_config.json").write_bytes(config)
    return HuggingFaceTokenizer(str(tmp_path), **options)


# The two ways the file's post-processor is applied: legacy mode, and current mode with
# --tokenizer-hf-include-special-tokens (current mode without it never applies it).
WITH_POST_PROCESSOR = [{"legacy": True}, {"include_special_tokens": True}]


def test_huggingface_byte_level_file_is_cached_and_exact(bpe_dir, tmp_path, corpus):
    tokenizer = _hf_folder(bpe_dir, tmp_path)
    # Texts with "<|endoftext|>" (an added token the library matches) take the plain path.
    assert_same_as_plain(tokenizer, ADVERSARIAL + fuzz_texts(800) + corpus[:20])
    assert isinstance(tokenizer._word_encoder, ByteLevelWordEncoder)
    eod = tokenizer.eod
    assert tokenizer.tokenize_batch(["a<|endoftext|>b"])[0].count(eod) == 1


@pytest.mark.parametrize("options", WITH_POST_PROCESSOR)
def test_huggingface_template_post_processor(bpe_dir, tmp_path, options):
    def add_template(tokenizer):
        tokenizer.add_special_tokens(["<|begin|>", "<|end|>"])
        ids = {t: tokenizer.token_to_id(t) for t in ("<|begin|>", "<|end|>", "<|endoftext|>")}
        tokenizer.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin|> $A <|end|> <|endoftext|>",
                                          special_tokens=list(ids.items())),
        ])

    tokenizer = _hf_folder(bpe_dir, tmp_path, add_template, **options)
    assert_same_as_plain(tokenizer, ADVERSARIAL + fuzz_texts(200) + ["x <|begin|> y"])
    assert isinstance(tokenizer._word_encoder, ByteLevelWordEncoder)
    begin, end = tokenizer.vocab["<|begin|>"], tokenizer.vocab["<|end|>"]
    assert tokenizer.tokenize_batch([""]) == [[begin, end, tokenizer.eod]]
    # Current mode without the flag: no post-processor, still word-cached and exact.
    plain = HuggingFaceTokenizer(str(tmp_path))
    assert_same_as_plain(plain, ADVERSARIAL + ["x <|begin|> y"])
    assert isinstance(plain._word_encoder, ByteLevelWordEncoder)
    assert plain.tokenize_batch(["", "x <|begin|> y"]) == [
        [], [*plain.tokenize("x "), begin, *plain.tokenize(" y")]]


@pytest.mark.parametrize("options", WITH_POST_PROCESSOR)
@pytest.mark.parametrize("change", ["prefix_space", "roberta", "normalizer"])
def test_huggingface_other_files_keep_the_plain_path(bpe_dir, tmp_path, change, options):
    def edit(tokenizer):
        if change == "prefix_space":
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        elif change == "roberta":
            eod = tokenizer.token_to_id("<|endoftext|>")
            tokenizer.post_processor = processors.RobertaProcessing(("<|endoftext|>", eod),
                                                                    ("<|endoftext|>", eod))
        else:
            tokenizer.normalizer = normalizers.Lowercase()

    tokenizer = _hf_folder(bpe_dir, tmp_path, edit, **options)
    assert_same_as_plain(tokenizer, ADVERSARIAL[:20])
    assert tokenizer._word_encoder is None


# ---- SentencePiece -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["SentencePieceTokenizer", "GPTSentencePieceTokenizer",
                                  "Llama2Tokenizer"])
def test_sentencepiece_adversarial_and_fuzz(sp_model, kind):
    kwargs = {"vocab_extra_ids": 2} if kind == "SentencePieceTokenizer" else {}
    tokenizer = build_tokenizer(kind, tokenizer_model=str(sp_model), **kwargs)
    assert_same_as_plain(tokenizer, ADVERSARIAL + fuzz_texts(1500))
    assert isinstance(tokenizer._word_encoder, SentencePieceWordEncoder)


def test_sentencepiece_corpus(sp_model, corpus):
    tokenizer = build_tokenizer("SentencePieceTokenizer", tokenizer_model=str(sp_model))
    tokenizer.num_threads = 1
    assert_same_as_plain(tokenizer, corpus)
    assert len(tokenizer._word_encoder._cache) > 1000


def test_sentencepiece_bad_text_fails_like_the_plain_path(sp_model):
    tokenizer = build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=str(sp_model))
    with pytest.raises(TypeError):
        tokenizer._sp.encode(["bad \ud800"], out_type=int)
    with pytest.raises(TypeError):
        tokenizer.tokenize_batch(["fine", "bad \ud800"])


def _train_variant(corpus, tmp_path, **options):
    """A small SentencePiece model with sentencepiece's defaults unless `options` say."""
    sample = [line for text in corpus[:25] for line in text.split("\n") if line.strip()]
    sample += fuzz_texts(300, seed=7)
    settings = dict(vocab_size=600, model_type="bpe", num_threads=1, hard_vocab_limit=False,
                    minloglevel=2, bos_id=1, eos_id=2, unk_id=0)
    settings.update(options)
    path = tmp_path / "variant.model"
    with open(path, "wb") as out:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sample), model_writer=out, **settings)
    return build_tokenizer("SentencePieceTokenizer", tokenizer_model=str(path))


LLAMA_STYLE = {"byte_fallback": True, "remove_extra_whitespaces": False, "split_digits": True,
               "allow_whitespace_only_pieces": True, "normalization_rule_name": "identity"}


# Models on which word-by-word encoding is exact although the normalizer changes the text
# (NFKC rules, whitespace runs collapsed, leading/trailing spaces dropped) or <unk>s occur;
# `spaces_only`: words are cut from the text itself (the normalizer only escapes spaces).
@pytest.mark.parametrize("options, spaces_only", [
    ({}, False),  # nmt_nfkc, remove_extra_whitespaces, no byte fallback: <unk> runs
    ({"normalization_rule_name": "nfkc_cf", "add_dummy_prefix": False}, False),
    ({"normalization_rule_name": "identity"}, False),  # still removes extra whitespace
    (LLAMA_STYLE, True),
    ({**LLAMA_STYLE, "add_dummy_prefix": False, "byte_fallback": False}, True),
    ({"user_defined_symbols": ["<tag>", "▁def"]}, False),
    ({**LLAMA_STYLE, "user_defined_symbols": ["<tag>", "▁def"]}, True),
])
def test_sentencepiece_models_that_are_cached(corpus, tmp_path, options, spaces_only):
    tokenizer = _train_variant(corpus, tmp_path, **options)
    texts = ADVERSARIAL + fuzz_texts(800) + ["x <tag>y<tag> def", " def", "▁def\u2581▁def"]
    assert_same_as_plain(tokenizer, texts)
    assert isinstance(tokenizer._word_encoder, SentencePieceWordEncoder)
    assert tokenizer._word_encoder._spaces_only == spaces_only


@pytest.mark.parametrize("options", [
    {"model_type": "unigram"},
    {"treat_whitespace_as_suffix": True},
    {"split_by_whitespace": False},  # pieces such as "s▁the" cross word boundaries
])
def test_sentencepiece_models_that_keep_the_plain_path(corpus, tmp_path, options):
    tokenizer = _train_variant(corpus, tmp_path, **options)
    assert_same_as_plain(tokenizer, ADVERSARIAL[:25] + fuzz_texts(100))
    assert tokenizer._word_encoder is None


def test_gpt2_splitter_cuts_like_the_library():
    """The Python cut itself, against the library's pre-tokenizer, on every test text."""
    splitter = Gpt2WordSplitter()
    library = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    table = byte_to_char()
    for text in ADVERSARIAL + fuzz_texts(500) + mostly_ascii_texts(1000):
        words = splitter.split(text)
        assert words is not None, text[:40]
        mapped = ["".join(table[b] for b in word.encode("utf-8")) for word in words]
        assert mapped == [piece for piece, _ in library.pre_tokenize_str(text)], text[:80]
