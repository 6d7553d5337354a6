"""Character and word error rates with their substitution/deletion/insertion counts (jiwer).

CER counts every character including spaces, as jiwer and Whisper's scoring do; WER counts
whitespace-separated words, so for Chinese (no spaces) score CER."""
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import jiwer


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


def _counts(output) -> ErrorCounts:
    return ErrorCounts(output.substitutions, output.deletions, output.insertions,
                       output.hits + output.substitutions + output.deletions)


def character_errors(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    return _counts(jiwer.process_characters(list(refs), list(hyps))) if refs else ErrorCounts()


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    return _counts(jiwer.process_words(list(refs), list(hyps))) if refs else ErrorCounts()


def character_error_rate(refs: List[str], hyps: List[str]) -> float:
    return character_errors(refs, hyps).rate


def utterance_errors(ref: str, hyp: str) -> Dict[str, Dict[str, float]]:
    """Per-utterance counts, for the per-utterance report."""
    return dict(char=character_errors([ref], [hyp]).to_dict(), word=word_errors([ref], [hyp]).to_dict())
