"""GPT-2's pre-tokenization (how a text is cut into words before BPE) in Python, cutting exactly
where the tokenizers library's ``ByteLevel(use_regex=True)`` pre-tokenizer cuts.

The library runs GPT-2's pattern in its own regex engine (Oniguruma). We run the same pattern:
* pure-ASCII text with the standard ``re`` module and explicit ASCII classes (about twice as
  fast as ``regex``), once the library's classes of the 128 ASCII characters are checked to
  be exactly those;
* around non-ASCII characters with the ``regex`` package (``\\p{L}`` / ``\\p{N}``). Its
  Unicode version may differ from the library's (letters added in Unicode 16, say), so every
  character is checked against the library the first time it is seen, and ``split`` returns
  None (meaning: encode this text the plain way) for a text with a character they class
  differently. Without ``regex`` installed, every non-ASCII text gets None.
"""
import re
from typing import List, Optional, Set

# GPT-2's pattern. The contraction alternatives are grouped behind one quote (none is a prefix
# of another, so the first match is unchanged).
GPT2_SPLIT = r"'(?:s|t|re|ve|m|ll|d)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
CHAR_CLASSES = (r"\p{L}", r"\p{N}", r"\s")

_LETTER, _DIGIT, _SPACE = "A-Za-z", "0-9", "\\t\\n\\x0b\\x0c\\r "
ASCII_SPACE_CHARS = "\t\n\x0b\x0c\r "
# The same pattern on ASCII. " ?" is factored out of the three word alternatives (faster): at
# a space only their with-space forms can match, elsewhere only their without-space forms, so
# the first match is the same.
ASCII_GPT2_SPLIT = (
    rf"'(?:s|t|re|ve|m|ll|d)| ?(?:[{_LETTER}]+|[{_DIGIT}]+|[^{_SPACE}{_LETTER}{_DIGIT}]+)"
    rf"|[{_SPACE}]+(?![^{_SPACE}])|[{_SPACE}]+"
)
ASCII_CHARS = "".join(chr(c) for c in range(128))
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def _class_marks(replace_fns, text: str) -> List[str]:
    """For each class, `text` with the characters of that class replaced by NUL."""
    return [replace(text) for replace in replace_fns]


def _ends_a_word(char: str) -> bool:
    """ASCII and not whitespace: a newline after it starts a new word, whatever follows."""
    return char < "\x80" and char not in ASCII_SPACE_CHARS


class Gpt2WordSplitter:
    """``split(text)``: the words GPT-2's pre-tokenizer cuts `text` into, or None."""

    def __init__(self):
        from tokenizers import Regex, normalizers

        self._library_marks = [
            normalizers.Replace(Regex(pattern), "\x00").normalize_str for pattern in CHAR_CLASSES
        ]
        self._agreed: Set[str] = set()
        self._disagreed: Set[str] = set()
        expected = [re.sub(f"[{cls}]", "\x00", ASCII_CHARS) for cls in (_LETTER, _DIGIT, _SPACE)]
        ascii_ok = _class_marks(self._library_marks, ASCII_CHARS) == expected
        self._split_ascii = re.compile(ASCII_GPT2_SPLIT).findall if ascii_ok else None
        try:
            import regex
        except ImportError:
            self._split_unicode = None
            return
        self._split_unicode = regex.compile(GPT2_SPLIT).findall
        self._python_marks = [
            (lambda text, p=regex.compile(pattern): p.sub("\x00", text))
            for pattern in CHAR_CLASSES
        ]
        self._classify(set(ASCII_CHARS))

    def split(self, text: str) -> Optional[List[str]]:
        if self._split_ascii is not None and text.isascii():
            return self._split_ascii(text)
        if self._split_unicode is None or not self._engines_agree_on(text):
            return None
        if self._split_ascii is None:
            return self._split_unicode(text)
        return self._split_mixed(text)

    def _split_mixed(self, text: str) -> List[str]:
        """The lines around non-ASCII characters with ``regex``, the rest with ``re``.

        A newline right after an ASCII non-space character is a cut in any text (no word
        contains both), and no alternative looks behind, so the pieces between such newlines
        cut alone exactly as they cut in place.
        """
        words: List[str] = []
        done = 0
        while True:
            found = _NON_ASCII_RUN.search(text, done)
            if found is None:
                break
            start = text.rfind("\n", done, found.start())
            while start > done and not _ends_a_word(text[start - 1]):
                start = text.rfind("\n", done, start)
            start = max(start, done)
            stop = text.find("\n", found.end())
            while stop != -1 and not _ends_a_word(text[stop - 1]):
                stop = text.find("\n", stop + 1)
            stop = len(text) if stop == -1 else stop
            if start > done:
                words += self._split_ascii(text[done:start])
            words += self._split_unicode(text[start:stop])
            done = stop
        if done < len(text):
            words += self._split_ascii(text[done:])
        return words

    def _engines_agree_on(self, text: str) -> bool:
        unchecked = set(text).difference(self._agreed)
        if unchecked:
            if not unchecked.isdisjoint(self._disagreed):
                return False
            self._classify(unchecked)
            if not unchecked.isdisjoint(self._disagreed):
                return False
        return True

    def _classify(self, chars: Set[str]) -> None:
        """Sort `chars` into agreed / disagreed: same letter, number and whitespace classes in
        Python's ``regex`` and in the library's engine."""
        surrogates = {c for c in chars if "\ud800" <= c <= "\udfff"}  # not encodable: plain path
        self._disagreed |= surrogates
        ordered = "".join(sorted(chars - surrogates))
        library = _class_marks(self._library_marks, ordered)
        python = _class_marks(self._python_marks, ordered)
        if any(len(marks) != len(ordered) for marks in library + python):
            self._disagreed.update(ordered)  # cannot compare position by position
            return
        for i, char in enumerate(ordered):
            same = all(lib[i] == py[i] for lib, py in zip(library, python))
            (self._agreed if same else self._disagreed).add(char)
