import pytest

from asr.metrics import AttentionFailures, character_errors, mixed_errors, utterance_errors, word_errors


def test_character_counts_include_spaces():
    counts = character_errors(["one two"], ["one too"])  # w -> o: one substitution of 7 characters
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.reference_length) == (1, 0, 0, 7)
    assert counts.rate == pytest.approx(1 / 7)


def test_word_counts_and_empty_references():
    counts = word_errors(["one two three", ""], ["one three", "four"])
    # "two" deleted; "four" inserted against an empty reference
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.reference_length) == (0, 1, 1, 3)
    assert counts.rate == pytest.approx(2 / 3)


def test_chinese_characters_are_scored_one_by_one():
    counts = character_errors(["换一首歌"], ["换首个歌"])
    assert counts.errors == 2 and counts.reference_length == 4


def test_mixed_error_rate_scores_han_characters_and_english_words():
    counts = mixed_errors(["我爱new york"], ["我爱new yorks"])
    assert (counts.substitutions, counts.reference_length) == (1, 4)  # one word wrong, not one letter
    assert mixed_errors(["换一首歌"], ["换首个歌"]).rate == character_errors(["换一首歌"], ["换首个歌"]).rate


def test_per_utterance_report():
    chars, words = utterance_errors("eight", "eigh")
    assert chars.deletions == 1 and chars.rate == pytest.approx(0.2)
    assert words.substitutions == 1


def test_attention_failures_classify_stops_skips_and_loops():
    failures = AttentionFailures()
    failures.add("one two three four five six", "one two three four")  # stops two words early
    failures.add("one two three four five six", "one four five six")  # skips "two three"
    failures.add("one two three", "one two two three")  # repeats "two"
    failures.add("one one one four", "one one one four")  # repeated digits said right: nothing
    failures.add("one two three", "one too three")  # a plain substitution: nothing
    failures.add("one two", "")  # says nothing at all: an early stop
    assert (failures.early_stops, failures.skips, failures.loops) == (2, 1, 1)
