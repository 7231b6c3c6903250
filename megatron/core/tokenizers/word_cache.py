"""Token ids per word, remembered: the shared core of the word-cached encode paths.

Pre-tokenizing tokenizers (GPT-2 byte-level BPE, SentencePiece BPE over whitespace-led words)
encode every word on its own, so a document's ids are the concatenation of its words' ids.
Natural text repeats a small set of words over and over; encoding each distinct word once and
looking the others up is what makes preprocessing fast. Which splits are exact is decided by
the callers (``byte_level_words.py``, ``sentencepiece_words.py``); this file only remembers.

Memory bound: the table is emptied when it holds ``max_words`` words at the start of a batch,
so it never holds more than ``max_words`` plus the distinct words of one batch. Emptying (rather
than LRU bookkeeping) keeps the hit path a plain dict lookup; frequent words come back within a
few documents. A remembered word costs about 200-350 bytes of process memory (measured), so the
default of 2**20 words caps a worker's growth near 200-350 MB. A smaller cap only costs speed
when a corpus has more distinct words than the cap (the 36 MB standard-library corpus has 96 K
GPT-2 words and 584 K SentencePiece words, which are whitespace-to-whitespace).
"""
from itertools import chain
from typing import Callable, Dict, List, Sequence

import numpy

DEFAULT_MAX_WORDS = 1 << 20


class WordCache:
    """word -> ids table in front of `encode_words`, a batched encoder of single words."""

    def __init__(self, encode_words: Callable[[List[str]], List[List[int]]],
                 max_words: int = DEFAULT_MAX_WORDS):
        if max_words < 1:
            raise ValueError(f"WordCache max_words: expected a positive count, got {max_words}")
        self._encode_words = encode_words
        self.max_words = max_words
        self._ids: Dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def ids_per_text(self, words_per_text: Sequence[Sequence[str]]) -> List[List[int]]:
        """For each text, given as the list of its words in order, the concatenated ids of
        its words."""
        table = self._ids
        if len(table) >= self.max_words:
            table.clear()
        # One encode call for every word the whole batch has not seen before.
        missing = list(set(chain.from_iterable(words_per_text)).difference(table))
        if missing:
            table.update(zip(missing, _packed(self._encode_words(missing))))
        # A text's ids: its words' packed ids joined (one C call), unpacked to ints.
        lookup, join = table.__getitem__, b"".join
        return [memoryview(join(map(lookup, words))).cast("I").tolist()
                for words in words_per_text]


def _packed(id_lists: List[List[int]]) -> List[bytes]:
    """Each id list as the bytes of a C unsigned int array.

    Bytes rather than lists or tuples of ints: about a third of the memory, invisible to the
    garbage collector, and joining them is a memory copy; the ints are made once per text, close
    together in memory, where following a million scattered int objects was the slowest part.
    """
    lengths = numpy.fromiter(map(len, id_lists), dtype=numpy.int64, count=len(id_lists))
    flat = numpy.fromiter(chain.from_iterable(id_lists), dtype=numpy.uintc,
                          count=int(lengths.sum())).tobytes()
    ends = (numpy.cumsum(lengths) * numpy.dtype(numpy.uintc).itemsize).tolist()
    return list(map(flat.__getitem__, map(slice, [0] + ends[:-1], ends)))
