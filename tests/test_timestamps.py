from types import SimpleNamespace

import numpy as np
import pytest

from asr.decode import DecodingOptions, DecodingResult
from asr.segments import Segment
from asr.text import CharTokenizer
from asr.timestamps import find_speech, meet_at_quietest, snap_to_speech, snap_words, token_spans, words_with_times
from asr.transcribe import Recognizer

from test_alignment import BLANK, log_probs_from, pad_batch


def test_english_words_run_from_their_first_token_to_their_last():
    tokens = [" ", "o", "n", "e", " ", " ", "t", "w", "<unk>", "o", " ", "<unk>"]
    starts, ends = [float(i) for i in range(len(tokens))], [i + 0.5 for i in range(len(tokens))]
    assert words_with_times(tokens, starts, ends, "en") == [("one", 1.0, 3.5), ("two", 6.0, 9.5)]


def test_each_character_is_a_word_in_a_language_written_without_spaces():
    tokens = ["你", "好", " ", "世", "<unk>", "界"]
    starts, ends = [0.0, 0.2, 0.4, 0.5, 0.7, 0.8], [0.2, 0.4, 0.5, 0.7, 0.8, 1.0]
    assert words_with_times(tokens, starts, ends, "zh-CN") == [("你", 0.0, 0.2), ("好", 0.2, 0.4), ("世", 0.5, 0.7),
                                                               ("界", 0.8, 1.0)]


def test_ctc_word_times_are_the_frames_the_forced_alignment_gives_each_word():
    tokenizer = CharTokenizer(["<blank>", "<unk>", "<sos/eos>", "a", "b", "\u2581"])
    a, b, space = 3, 4, 5
    v = len(tokenizer)
    items = [
        # "ab ba": a on frames 1-2, b on 3, the space on 5, b on 7, a on 8-9; blanks between
        log_probs_from([BLANK, a, a, b, BLANK, space, BLANK, b, a, a, BLANK, BLANK], v),
        # three tokens cannot fit in two frames: no path, so attention's frames are used
        log_probs_from([a, a], v),
        # no token at all
        log_probs_from([BLANK, BLANK, BLANK], v),
    ]
    log_probs, lengths = pad_batch(items, 12, v)
    hypotheses = [[a, b, space, b, a], [a, space, a], []]
    attended = [[0, 0, 0, 0, 0], [1, 0, 1], []]  # attention frames: a glance back counts as staying put
    results = [DecodingResult(h, 0.0, f, [(h, 0.0)], 0) for h, f in zip(hypotheses, attended)]
    # a model whose encoder output is its CTC log-probabilities, with 40 ms frames
    model = SimpleNamespace(ctc_log_probs=lambda memory: memory, blank=BLANK, seconds_per_frame=0.04,
                            cfg=SimpleNamespace(ctc_loss_weight=0.3))
    spans = token_spans(model, log_probs, lengths, results, "ctc")
    assert spans == [[(1, 2), (3, 3), (5, 5), (7, 7), (8, 9)], [(1, 1), (1, 1), (1, 1)], []]
    attention = [[(0, 0)] * 5, [(1, 1)] * 3, []]
    assert token_spans(model, log_probs, lengths, results, "attention") == attention
    model.cfg.ctc_loss_weight = 0.0  # a CTC head never trained is not asked
    assert token_spans(model, log_probs, lengths, results, "ctc") == attention

    piece = Segment("x", "", duration=0.36, offset=10.0)  # the second piece of a recording cut at 10 s
    words = Recognizer(model, tokenizer, "en").words(piece, hypotheses[0], spans[0], start=0.0)
    assert [w for w, _, _ in words] == ["ab", "ba"]
    assert [(round(s, 6), round(e, 6)) for _, s, e in words] == [(10.04, 10.16), (10.28, 10.36)]  # 10.4 capped


def test_timestamps_option_is_ctc_or_attention():
    assert DecodingOptions().timestamps == "ctc" and DecodingOptions(timestamps="attention")
    with pytest.raises(ValueError, match="timestamps"):
        DecodingOptions(timestamps="both")


def test_transcripts_have_increasing_word_times_within_the_audio(overfit_model):
    model_path, manifest = overfit_model
    recognizer = Recognizer.load(model_path)
    for source in ("ctc", "attention"):
        for t in recognizer.transcribe(manifest, recognizer.options(timestamps=source)):
            assert [w for w, _, _ in t.words] == t.text.split()
            assert all(0 <= s < e <= t.duration for _, s, e in t.words), t.words
            assert all(a[2] <= b[1] for a, b in zip(t.words, t.words[1:]))


def bursts(spans, seconds=3.0, rate=16000):
    """Tones at the given (start, end) seconds over a noise floor 50 dB below them."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * 10 ** (-50 / 20) * rng.standard_normal(len(t))
    for start, end in spans:
        audio += np.where((t >= start) & (t < end), 0.3 * np.sin(2 * np.pi * 300 * t), 0.0)
    return audio.astype(np.float32)


def test_speech_runs_are_found_for_each_burst_and_bridge_short_pauses():
    speech = find_speech(bursts([(0.5, 0.9), (1.3, 1.6), (1.65, 2.0)]), 16000, 6.0)
    onsets, offsets = speech.onsets, speech.offsets
    # the 50 ms pause at 1.6 s is shorter than MIN_PAUSE: one run from 1.3 to 2.0 s
    np.testing.assert_allclose(onsets, [0.5, 1.3], atol=0.02)
    np.testing.assert_allclose(offsets, [0.9, 2.0], atol=0.02)


def test_words_snap_to_the_edges_of_their_own_speech_only():
    onsets, offsets = np.array([0.5, 1.3]), np.array([0.9, 2.0])
    words = [("one", 0.56, 0.82),  # inside the first run: out to its edges
             ("two", 1.38, 1.60), ("three", 1.64, 1.92),  # two words in one run: only the outer edges move
             ("four", 2.6, 2.8)]  # a run's edge further than max_shift: left alone
    assert snap_to_speech(words, onsets, offsets, 0.3) == [("one", 0.5, 0.9), ("two", 1.3, 1.6),
                                                           ("three", 1.64, 2.0), ("four", 2.6, 2.8)]
    # a start in a pause moves on to the next run, an end in a pause back to the last one's stop
    assert snap_to_speech([("one", 0.42, 0.97)], onsets, offsets, 0.3) == [("one", 0.5, 0.9)]
    assert snap_to_speech([("uh", 1.0, 1.1)], onsets, offsets, 0.3) == [("uh", 1.0, 1.1)]  # wholly in a pause
    assert snap_to_speech(words, onsets, offsets, 0.0) == words  # 0: nothing moves
    assert snap_to_speech(words, np.array([]), np.array([]), 0.3) == words  # silence throughout


def test_snapping_is_an_option_checked_like_the_others():
    assert DecodingOptions().snap_seconds > 0
    with pytest.raises(ValueError, match="snap_seconds"):
        DecodingOptions(snap_seconds=-1)


def test_neighbours_meet_at_the_quietest_moment_between_them():
    """Two bursts with a 30 ms dip at 1.0 s between them (too short to be a pause): CTC's end of the
    first (0.9 s) and start of the second (1.15 s) both move to the dip; a word's other edge is left alone."""
    audio = bursts([(0.5, 0.985), (1.015, 1.5)])
    speech = find_speech(audio, 16000, 6.0)
    assert len(speech.onsets) == 1  # one run of speech: snapping alone leaves the shared boundary as it was
    words = [("one", 0.55, 0.9), ("two", 1.15, 1.45)]
    (_, s1, e1), (_, s2, e2) = meet_at_quietest(words, speech.times, speech.level)
    assert (s1, e2) == (0.55, 1.45) and e1 == s2 == pytest.approx(1.0, abs=0.011)
    # then snapping moves the outer edges out to the run's
    snapped = snap_words(words, speech, 0.3)
    assert [w for w, _, _ in snapped] == ["one", "two"]
    assert [t for _, s, e in snapped for t in (s, e)] == pytest.approx([0.5, e1, s2, 1.5], abs=0.02)
    assert snap_to_speech(words, speech.onsets, speech.offsets, 0.3)[0][2] == 0.9  # the test can fail
    # the meeting point stays inside both words, whatever the recording
    quiet_inside = meet_at_quietest([("a", 0.95, 0.99), ("b", 1.01, 1.02)], speech.times, speech.level)
    assert all(s <= e for _, s, e in quiet_inside) and quiet_inside[0][2] == quiet_inside[1][1]
