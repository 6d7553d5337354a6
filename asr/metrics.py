"""Character and word error rates with their substitution/deletion/insertion counts (jiwer).

CER counts every character including spaces, as jiwer and Whisper's scoring do; WER counts
whitespace-separated words, so for Chinese (no spaces) score CER, or the mixed error rate (MER: Han
characters one by one, embedded English word by word) where it holds English words."""
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import jiwer

from .text import mixed_tokens


@dataclass
class ErrorCounts:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0  # characters or words in the references

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.reference_length if self.reference_length else float(self.errors > 0)

    def to_dict(self) -> Dict[str, float]:
        return dict(asdict(self), errors=self.errors, rate=self.rate)

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        """The counts of both sets of utterances: what scoring a test set in parts adds up to."""
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.reference_length + other.reference_length)


def _counts(output) -> ErrorCounts:
    return ErrorCounts(output.substitutions, output.deletions, output.insertions,
                       output.hits + output.substitutions + output.deletions)


def character_errors(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    return _counts(jiwer.process_characters(list(refs), list(hyps))) if refs else ErrorCounts()


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    return _counts(jiwer.process_words(list(refs), list(hyps))) if refs else ErrorCounts()


def mixed_errors(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Errors over Han characters and whole non-Han words ("我用iphone x" is 4 units)."""
    return word_errors([" ".join(mixed_tokens(t)) for t in refs], [" ".join(mixed_tokens(t)) for t in hyps])


def character_error_rate(refs: List[str], hyps: List[str]) -> float:
    return character_errors(refs, hyps).rate


def utterance_errors(ref: str, hyp: str) -> Tuple[ErrorCounts, ErrorCounts]:
    """One utterance's character and word errors: its report line, and what totals and groups add up."""
    return character_errors([ref], [hyp]), word_errors([ref], [hyp])


@dataclass
class AttentionFailures:
    """Utterances showing the three ways an attention decoder loses its place (word level, or
    character level for Chinese): it stops early (the last `min_run`+ reference words missing), skips
    (`min_run`+ consecutive reference words missing elsewhere) or loops (inserted words that repeat
    the words just before them)."""
    early_stops: int = 0
    skips: int = 0
    loops: int = 0

    def add(self, ref: str, hyp: str, min_run: int = 2) -> None:
        ref_words, hyp_words = ref.split(), hyp.split()
        if not ref_words:
            return
        if not hyp_words:
            self.early_stops += len(ref_words) >= min_run
            return
        chunks = jiwer.process_words(ref, hyp).alignments[0]
        deletions = [c for c in chunks if c.type == "delete" and c.ref_end_idx - c.ref_start_idx >= min_run]
        self.early_stops += any(c.ref_end_idx == len(ref_words) for c in deletions)
        self.skips += any(c.ref_end_idx < len(ref_words) for c in deletions)
        self.loops += any(c.type == "insert" and _repeats_before(hyp_words, c.hyp_start_idx, c.hyp_end_idx)
                          for c in chunks)


def _repeats_before(words: List[str], start: int, end: int) -> bool:
    n = end - start
    return start >= n and words[start:end] == words[start - n:start]
