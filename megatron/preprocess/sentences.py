"""Sentence splitting for `--split-sentences`: NLTK punkt, and never a download at run time.

NLTK is optional. With its punkt data installed for `--lang` we use that model (what Megatron
uses); without the data we train a punkt model on the start of the input itself (unsupervised,
deterministic, the same for every worker); without NLTK we stop and say how to install it.
"""

import sys
from typing import Callable, Iterable, List, Optional

# Megatron splits a text in pieces of this many characters before punkt sees it (punkt's cost
# grows with the text); sentences never span two pieces, so we must cut at the same places.
SPLIT_PIECE_CHARS = 1_000_000


def _nltk():
    # Imported only when sentences are split: importing NLTK takes seconds.
    try:
        from nltk.tokenize import punkt
    except ImportError:
        raise RuntimeError(
            "--split-sentences needs NLTK, which is not installed: pip install nltk "
            "(its punkt data is optional: python -m nltk.downloader punkt_tab)"
        ) from None
    return punkt


_keep_newlines_class = None


def __getattr__(name):
    # The class derives from NLTK's, so it is made on first use; pickle (spawned workers)
    # finds it by name through this hook.
    global _keep_newlines_class
    if name != "KeepNewlinesLanguageVars":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _keep_newlines_class is None:

        class KeepNewlinesLanguageVars(_nltk().PunktLanguageVars):
            """Sentence ends that swallow the whitespace after them, so a newline between two
            sentences stays at the end of the first instead of being dropped (Megatron's
            `--keep-newlines` rule, the well-known punkt recipe for keeping empty lines)."""

            _period_context_fmt = (
                r"\S*%(SentEndChars)s\s*(?=(?P<after_tok>%(NonWord)s|(?P<next_tok>\S+)))"
            )

        KeepNewlinesLanguageVars.__module__ = __name__
        KeepNewlinesLanguageVars.__qualname__ = "KeepNewlinesLanguageVars"
        _keep_newlines_class = KeepNewlinesLanguageVars
    return _keep_newlines_class


def _installed_params(punkt, lang: str):
    """The punkt parameters of NLTK's data for `lang`, or None when the data is absent."""
    try:
        return punkt.PunktTokenizer(lang)._params  # NLTK >= 3.8.2: punkt_tab
    except (LookupError, AttributeError, ValueError, OSError):
        pass
    try:
        import nltk

        return nltk.data.load(f"tokenizers/punkt/{lang}.pickle")._params  # older NLTK: pickles
    except Exception:  # absent, or a newer NLTK that refuses pickles
        return None


def build_sentence_splitter(
    lang: str,
    keep_newlines: bool,
    training_texts: Callable[[], Iterable[str]],
    log=lambda message: print(message, file=sys.stderr),
):
    """A punkt splitter with `.tokenize(text) -> list of sentences`.

    `training_texts()` is called only when NLTK has no punkt data for `lang`: the texts to
    train on (the start of the input).
    """
    punkt = _nltk()
    params = _installed_params(punkt, lang)
    if params is None:
        trainer = punkt.PunktTrainer()
        total = 0
        for text in training_texts():
            trainer.train(text, finalize=False)
            total += len(text)
        trainer.finalize_training()
        params = trainer.get_params()
        log(
            f"NLTK has no punkt data for --lang {lang}; trained a punkt model on the first "
            f"{total / 1e6:.1f} M characters of the input instead (for Megatron's model: "
            "python -m nltk.downloader punkt_tab, or set NLTK_DATA)"
        )
    lang_vars = __getattr__("KeepNewlinesLanguageVars")() if keep_newlines else None
    return punkt.PunktSentenceTokenizer(train_text=params, lang_vars=lang_vars)


def split_into_sentences(splitter, text: str) -> List[str]:
    """Sentences of `text`, cut in SPLIT_PIECE_CHARS pieces first as Megatron does."""
    sentences: List[str] = []
    for start in range(0, len(text), SPLIT_PIECE_CHARS):
        sentences.extend(splitter.tokenize(text[start : start + SPLIT_PIECE_CHARS]))
    return sentences


def sample_texts(values: Iterable, max_chars: int) -> Iterable[str]:
    """Texts (or sentences of pre-split values) until `max_chars` characters were given."""
    given = 0
    for value in values:
        for text in [value] if isinstance(value, str) else value:
            if given >= max_chars:
                return
            text = text[: max_chars - given]
            given += len(text)
            yield text


def maybe_split(splitter: Optional[object], value) -> List[str]:
    """The sequences a field value becomes: one text, its sentences, or a given list."""
    if isinstance(value, list):
        return value
    if splitter is None:
        return [value]
    return split_into_sentences(splitter, value)
