"""Transcript normalisation and the character vocabulary.

Training and scoring both call `normalize_text`, so a model is never penalised for casing or
punctuation that it was never taught to produce."""
import os
import re
import unicodedata
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

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


# Han characters (CJK unified ideographs, their extensions and compatibility forms) and the CJK
# symbols block: each is one "word" of Chinese, written without spaces around it.
_HAN = "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_SPACE_BESIDE_HAN = re.compile(f"(?<=[{_HAN}]) | (?=[{_HAN}])")
_HAN_CHAR = re.compile(f"[{_HAN}]")
_MIXED_TOKEN = re.compile(f"[{_HAN}]|[^\\s{_HAN}]+")
NUMERALS = ("keep", "chinese")  # what normalize_text does with Arabic numbers in Chinese text


def normalize_text(text: str, lang: str = "en", keep_punctuation: bool = False, lowercase: bool = True,
                   numerals: str = "keep") -> str:
    """NFKC (full-width forms become ASCII), case folding, punctuation removal (apostrophes inside
    words such as "don't" survive) and whitespace collapsing. For Chinese ("zh", "zh-CN", ...) spaces
    beside Han characters are removed, while the spaces between words of embedded English stay
    ("我用iphone x打电话"); numerals="chinese" spells Arabic numbers as they are read (see
    `chinese_numerals`), since a corpus that mixes "3" and "三" teaches the model two spellings."""
    if numerals not in NUMERALS:
        raise ASRError(f"numerals must be one of {', '.join(NUMERALS)}, got {numerals!r}")
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    if numerals == "chinese" and writes_without_spaces(lang):
        text = chinese_numerals(text)
    if lowercase:
        text = text.lower()
    if not keep_punctuation:
        text = _STRAY_APOSTROPHE.sub(" ", text).translate(_PUNCTUATION_TO_SPACE)
    text = " ".join(text.split())
    return _SPACE_BESIDE_HAN.sub("", text) if writes_without_spaces(lang) else text


def has_han(text: str) -> bool:
    return _HAN_CHAR.search(text) is not None


def mixed_tokens(text: str) -> List[str]:
    """Han characters one by one and every other run of non-space characters as a word: the units of
    the mixed error rate, which scores Chinese per character and embedded English per word."""
    return _MIXED_TOKEN.findall(text)


_DIGITS = "零一二三四五六七八九"
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"(\d+)(?:\.(\d+))?(%?)(年?)")


def _cardinal(n: int) -> str:
    """0 <= n < 10**16 as read: 10 十, 15 十五, 105 一百零五, 20300 二万零三百."""
    if n == 0:
        return _DIGITS[0]
    groups, text = [], ""
    while n:
        groups.append(n % 10000)
        n //= 10000
    for big, group in zip(reversed(range(len(groups))), reversed(groups)):
        if group == 0:
            text += "" if text.endswith(_DIGITS[0]) or not text else _DIGITS[0]
            continue
        part = ""
        for unit, digit in zip("千百十", (group // 1000 % 10, group // 100 % 10, group // 10 % 10)):
            if digit:
                part += _DIGITS[digit] + unit
            elif part and not part.endswith(_DIGITS[0]):
                part += _DIGITS[0]
        part = (part + (_DIGITS[group % 10] if group % 10 else "")).rstrip(_DIGITS[0])
        if text and group < 1000 and not text.endswith(_DIGITS[0]):
            part = _DIGITS[0] + part
        text += part + ("", "万", "亿", "万亿")[big]
    text = text.rstrip(_DIGITS[0])
    return text[1:] if text.startswith("一十") else text


def _spell_number(match: re.Match) -> str:
    whole, fraction, percent, year = match.groups()
    if year and len(whole) == 4 and not fraction:  # 2024年: years are read digit by digit
        return "".join(_DIGITS[int(d)] for d in whole) + year
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > 16:  # codes, phone numbers
        spoken = "".join(_DIGITS[int(d)] for d in whole)
    else:
        spoken = _cardinal(int(whole))
    if fraction:
        spoken += "点" + "".join(_DIGITS[int(d)] for d in fraction)
    return ("百分之" + spoken if percent else spoken) + year


def chinese_numerals(text: str) -> str:
    """Arabic numbers spelled in Chinese numerals as they are read: 1995年 一九九五年, 3.14 三点一四,
    50% 百分之五十, 2300 二千三百, 010 零一零 (a leading zero or more than 16 digits: digit by digit)."""
    return _NUMBER.sub(_spell_number, _THOUSANDS_SEPARATOR.sub("", text))


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

    def coverage(self, texts: Iterable[str]) -> Tuple[Dict[str, int], int]:
        """The characters of `texts` outside the vocabulary with their counts (most frequent first),
        and the number of characters in all: what a frequency cut-off costs."""
        counts, total = Counter(), 0
        for text in texts:
            symbols = list(_symbols(text))
            total += len(symbols)
            counts.update(s for s in symbols if s not in self._ids)
        return dict(counts.most_common()), total

    def save(self, path: str) -> None:
        from .fileio import atomic_output  # (fileio imports torch, which the rest of this module does not need)

        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:  # a killed run leaves none or all
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
