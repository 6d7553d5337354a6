"""Transcript normalisation and the character vocabulary.

Training and scoring both call `normalize_text`, so a model is never penalised for casing or
punctuation that it was never taught to produce."""
import os
import re
import unicodedata
from collections import Counter
from typing import Iterable, Iterator, List, Sequence

from .errors import ASRError

# Languages written without spaces between words: every space is removed, not just collapsed.
UNSPACED_LANGUAGES = ("zh",)

_APOSTROPHES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'"})
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


class _PunctuationToSpace(dict):
    """A str.translate table sending every punctuation mark and symbol (Unicode P* and S*) except
    the apostrophe to a space; filled in as characters are first seen, so it stays small and fast."""

    def __missing__(self, code: int) -> int:
        is_punctuation = code != ord("'") and unicodedata.category(chr(code))[0] in "PS"
        self[code] = ord(" ") if is_punctuation else code
        return self[code]


_PUNCTUATION_TO_SPACE = _PunctuationToSpace()


def normalize_text(text: str, lang: str = "en", keep_punctuation: bool = False, lowercase: bool = True) -> str:
    """NFKC (full-width forms become ASCII), case folding, punctuation removal (apostrophes inside
    words such as "don't" survive) and whitespace collapsing; for Chinese ("zh", "zh-CN", ...) every
    space is removed."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    if lowercase:
        text = text.lower()
    if not keep_punctuation:
        text = _STRAY_APOSTROPHE.sub(" ", text).translate(_PUNCTUATION_TO_SPACE)
    return word_separator(lang).join(text.split())


def writes_without_spaces(lang: str) -> bool:
    """True for languages written without spaces between words ("zh", "zh-CN", ...)."""
    return lang.split("-")[0].lower() in UNSPACED_LANGUAGES


def word_separator(lang: str) -> str:
    """What joins words, or the pieces of a recording decoded in parts: "" for Chinese, else " "."""
    return "" if writes_without_spaces(lang) else " "


BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
SPECIAL_TOKENS = (BLANK, UNK, SOS_EOS)
IGNORE_ID = -1  # pads token sequences; the losses skip it
SPACE = "\u2581"  # "▁": a visible stand-in for the space, so the vocabulary file has one token per line


def _symbols(text: str) -> Iterator[str]:
    return (SPACE if ch.isspace() else ch for ch in text)


class CharTokenizer:
    """Characters to ids and back. Ids 0-2 are <blank> (CTC), <unk> and <sos/eos>; the characters
    follow, most frequent first. Characters outside the vocabulary become <unk> and are counted in
    `unknown_counts`, so that callers can report what the model cannot spell."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ASRError(f"vocabulary must start with {', '.join(SPECIAL_TOKENS)}; got {tokens[:3]}")
        if len(set(tokens)) != len(tokens):
            raise ASRError("vocabulary lists a token more than once")
        bad = [t for t in tokens if not t or any(ch.isspace() for ch in t)]
        if bad:
            raise ASRError(f"vocabulary tokens must be non-empty and without whitespace; got {bad[0]!r}")
        self.tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}
        self.unknown_counts: Counter = Counter()

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "CharTokenizer":
        """From normalised transcripts; characters seen fewer than `min_count` times are left out.
        Ties in frequency are broken by the character, so the same texts give the same ids."""
        counts = Counter()
        for text in texts:
            counts.update(_symbols(text))
        chars = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
        return cls(list(SPECIAL_TOKENS) + chars)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "CharTokenizer":
        return cls(tokens)

    @classmethod
    def load(cls, path: str) -> "CharTokenizer":
        if not os.path.isfile(path):
            raise ASRError(f"{path}: no such vocabulary file")
        with open(path, encoding="utf-8") as f:
            tokens = f.read().splitlines()
        try:
            return cls(tokens)
        except ASRError as e:
            raise ASRError(f"{path}: {e}") from None

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.tokens) + "\n")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank(self) -> int:
        return 0

    @property
    def unk(self) -> int:
        return 1

    @property
    def sos_eos(self) -> int:
        return 2

    def encode(self, text: str) -> List[int]:
        """Ids of an already normalised text; spaces become "▁"."""
        ids = []
        for symbol in _symbols(text):
            token_id = self._ids.get(symbol)
            if token_id is None:
                self.unknown_counts[symbol] += 1
                token_id = self.unk
            ids.append(token_id)
        return ids

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> str:
        tokens = (self.tokens[i] for i in ids)
        if strip_specials:
            tokens = (t for t in tokens if t not in SPECIAL_TOKENS)
        return "".join(tokens).replace(SPACE, " ")
