import itertools
import math

import pytest
import torch

from asr.alignment import (choose_alignment_heads, ctc_forced_align, ctc_token_spans, diagonal_frames,
                           guided_attention_penalty, head_alignment_scores, query_frames)
from asr.model import IGNORE_ID

BLANK = 0


def log_probs_from(frames, vocab: int, peak: float = 0.9):
    """[T, V] log-probabilities: each frame puts `peak` on its label (or splits it over a dict's labels)
    and spreads the rest evenly."""
    probs = torch.full((len(frames), vocab), 0.0)
    for t, label in enumerate(frames):
        share = label if isinstance(label, dict) else {label: peak}
        for k, p in share.items():
            probs[t, k] = p
        rest = [k for k in range(vocab) if k not in share]
        probs[t, rest] = (1 - sum(share.values())) / len(rest)
    return probs.log()


def pad_batch(items, t_max: int, vocab: int):
    """(log_probs [B, T, V], lengths); padding frames strongly favour token 2, which must not matter."""
    filler = log_probs_from([2] * t_max, vocab, peak=0.99)
    log_probs = torch.stack([torch.cat([lp, filler[len(lp):]]) for lp in items])
    return log_probs, torch.tensor([len(lp) for lp in items])


def pad_tokens(sequences):
    n = max(len(s) for s in sequences)
    tokens = torch.tensor([s + [IGNORE_ID] * (n - len(s)) for s in sequences])
    return tokens, torch.tensor([len(s) for s in sequences])


def brute_force_first_frames(log_probs, tokens):
    """The best-scoring frame labelling that CTC collapses to `tokens`, by enumerating every one."""
    best, best_frames = -math.inf, None
    for labels in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        starts = [t for t, k in enumerate(labels) if k != BLANK and (t == 0 or k != labels[t - 1])]
        if [labels[t] for t in starts] != tokens:
            continue
        score = sum(log_probs[t, k].item() for t, k in enumerate(labels))
        if score > best:
            best, best_frames = score, starts
    return best_frames


def test_viterbi_finds_the_known_best_path_in_a_padded_batch():
    v = 5
    items = [
        # argmax 3 3 3 4 collapses to "3 4": the repeat forces a blank, best at frame 1
        log_probs_from([3, {3: 0.6, BLANK: 0.3}, 3, 4, BLANK, BLANK, BLANK, BLANK], v),
        log_probs_from([BLANK, BLANK, 2, 2, BLANK], v),  # one token held for two frames
        log_probs_from([2, 4], v),  # different tokens need no blank between them
        log_probs_from([BLANK, 3, BLANK, BLANK, 3, 3, BLANK, 4], v),  # a repeat with its blank in place
    ]
    log_probs, lengths = pad_batch(items, 8, v)
    tokens, token_lengths = pad_tokens([[3, 3, 4], [2], [2, 4], [3, 3, 4]])
    frames, feasible = ctc_forced_align(log_probs, lengths, tokens, token_lengths, BLANK)
    assert feasible.tolist() == [True, True, True, True]
    assert frames.tolist() == [[0, 2, 3], [2, -1, -1], [0, 1, -1], [1, 4, 7]]


def test_token_spans_are_the_first_and_last_frames_each_token_holds():
    v = 5
    items = [
        log_probs_from([BLANK, BLANK, 2, 2, BLANK], v),  # one token held for two frames
        log_probs_from([BLANK, 3, BLANK, BLANK, 3, 3, BLANK, 4], v),  # a repeat with its blank in place
        log_probs_from([3, 3, 4], v),  # too short for 3 _ 3 4
    ]
    log_probs, lengths = pad_batch(items, 8, v)
    tokens, token_lengths = pad_tokens([[2], [3, 3, 4], [3, 3, 4]])
    first, last, feasible = ctc_token_spans(log_probs, lengths, tokens, token_lengths, BLANK)
    assert feasible.tolist() == [True, True, False]
    assert first.tolist()[:2] == [[2, -1, -1], [1, 4, 7]] and last.tolist()[:2] == [[3, -1, -1], [1, 5, 7]]
    assert first.tolist() == ctc_forced_align(log_probs, lengths, tokens, token_lengths, BLANK)[0].tolist()


def test_viterbi_agrees_with_enumerating_every_alignment():
    torch.manual_seed(0)
    v, t_max = 4, 6
    references = [[1, 2], [3, 3], [2, 2, 2], [1, 3, 1], [2]]
    items = [torch.randn(t, v).log_softmax(-1) for t in (6, 5, 6, 4, 3)]
    log_probs, lengths = pad_batch(items, t_max, v)
    tokens, token_lengths = pad_tokens(references)
    frames, feasible = ctc_forced_align(log_probs, lengths, tokens, token_lengths, BLANK)
    assert feasible.all()
    for item, ref, got in zip(items, references, frames.tolist()):
        assert got[: len(ref)] == brute_force_first_frames(item, ref)


def test_an_utterance_too_short_for_its_tokens_is_flagged():
    v = 5
    items = [log_probs_from([3, 3, 4], v), log_probs_from([3, BLANK, 3, 4], v), log_probs_from([1], v)]
    log_probs, lengths = pad_batch(items, 4, v)
    tokens, token_lengths = pad_tokens([[3, 3, 4], [3, 3, 4], [1, 2]])  # 3 frames cannot hold 3 _ 3 4
    frames, feasible = ctc_forced_align(log_probs, lengths, tokens, token_lengths, BLANK)
    assert feasible.tolist() == [False, True, False]
    assert frames.tolist() == [[-1, -1, -1], [0, 2, 3], [-1, -1, -1]]


def test_diagonal_puts_each_token_at_the_centre_of_its_share():
    frames = diagonal_frames(torch.tensor([2, 4]), torch.tensor([10, 8]), 4)
    torch.testing.assert_close(frames[0, :2], torch.tensor([2.0, 7.0]))
    torch.testing.assert_close(frames[1], torch.tensor([0.5, 2.5, 4.5, 6.5]))


def one_hot_attention(frames, t_max: int):
    return torch.nn.functional.one_hot(torch.tensor(frames), t_max).float()


def test_penalty_is_zero_on_the_path_and_grows_with_distance():
    expected = torch.tensor([[1.0, 4.0, 7.0]])
    lengths, frames = torch.tensor([3]), torch.tensor([12])
    penalties = []
    for shift in (0, 1, 2, 4):
        weights = one_hot_attention([[1 + shift, 4 + shift, 7 + shift]], 12)
        penalties.append(guided_attention_penalty(weights, expected, lengths, frames, sigma=2.0).item())
    assert penalties[0] == 0.0
    assert penalties == sorted(penalties) and len(set(penalties)) == 4
    # each query is `shift` frames off: 1 - exp(-shift² / 2σ²) per query, averaged over the queries
    assert penalties[2] == pytest.approx(1 - math.exp(-4 / 8))
    wider = guided_attention_penalty(one_hot_attention([[3, 6, 9]], 12), expected, lengths, frames, sigma=4.0)
    assert wider.item() < penalties[2]


def test_penalty_ignores_padding_queries_and_frames_and_averages_utterances():
    expected = torch.tensor([[0.0, 2.0, 4.0], [1.0, 3.0, 0.0]])
    query_lengths, memory_lengths = torch.tensor([3, 2]), torch.tensor([6, 4])
    weights = torch.zeros(2, 3, 6)
    weights[0] = one_hot_attention([[0, 3, 4]], 6)[0]  # one query a frame off
    weights[1, :2] = one_hot_attention([[1, 3]], 6)[0]  # on the path
    clean = guided_attention_penalty(weights, expected, query_lengths, memory_lengths, sigma=1.0)
    assert clean.item() == pytest.approx((1 - math.exp(-0.5)) / 3 / 2)
    weights[1, 2] = 1.0  # a padding query attending everywhere
    weights[1, :, 4:] = 1.0  # and every query attending to padding frames
    assert torch.equal(guided_attention_penalty(weights, expected, query_lengths, memory_lengths, sigma=1.0), clean)


def test_query_frames_add_the_eos_query_on_the_last_frame():
    frames = query_frames(torch.tensor([[1, 4, 7], [2, 5, -1]]), torch.tensor([3, 2]), torch.tensor([12, 9]))
    assert frames.tolist() == [[1, 4, 7, 11], [2, 5, 8, 8]]  # past the EOS query: padding


def peaked(peaks, t_max: int, lengths):
    """Attention [B, Q, T] putting 0.6 on each query's peak and the rest evenly on the utterance's frames."""
    weights = torch.zeros(len(peaks), len(peaks[0]), t_max)
    for b, (row, n) in enumerate(zip(peaks, lengths)):
        for q, peak in enumerate(row):
            weights[b, q, :n] = 0.4 / n
            weights[b, q, peak] += 0.6
    return weights


def test_alignment_heads_chosen_on_a_constructed_case_are_the_diagonal_ones():
    memory_lengths, token_lengths = torch.tensor([12, 9]), torch.tensor([3, 2])
    expected = query_frames(torch.tensor([[1, 4, 7], [2, 5, -1]]), token_lengths, memory_lengths)
    query_lengths = token_lengths + 1  # 7 queries: [1, 4, 7, 11] and [2, 5, 8]; the last of the second is padding
    uniform = torch.zeros(2, 4, 12)
    uniform[0], uniform[1, :, :9] = 1 / 12, 1 / 9  # ties: the peak is frame 0
    heads = {
        "uniform": uniform,
        "diagonal": peaked([[1, 4, 7, 11], [2, 5, 8, 0]], 12, [12, 9]),
        "anti-diagonal": peaked([[10, 7, 4, 0], [6, 3, 0, 0]], 12, [12, 9]),
        "stuck at the end": peaked([[11] * 4, [8] * 4], 12, [12, 9]),
        "lagging": peaked([[5, 8, 11, 11], [6, 8, 8, 8]], 12, [12, 9]),
        "diagonal, jittering": peaked([[2, 3, 8, 10], [0, 6, 7, 3]], 12, [12, 9]),
    }
    weights = torch.stack(list(heads.values())).view(2, 3, 2, 4, 12)  # [layers, heads, B, Q, T]
    weights[0, 1, 1, :, 9:] = 5.0  # padding frames never peak
    scores = head_alignment_scores(weights, expected, query_lengths, memory_lengths, tolerance=2)
    # uniform: the first query of each utterance; stuck and lagging: the EOS queries; the jittering
    # diagonal stays within 2 frames of the path
    torch.testing.assert_close(scores, torch.tensor([[2 / 7, 1.0, 0.0], [2 / 7, 2 / 7, 1.0]]))
    assert choose_alignment_heads(scores, share_of_best=0.9).tolist() == [[False, True, False], [False, False, True]]


def test_a_head_moving_back_loses_the_query_and_excluded_utterances_count_for_nothing():
    expected = torch.tensor([[2.0, 3.0, 4.0], [0.0, 1.0, 2.0]])
    weights = torch.stack([peaked([[2, 4, 3], [5, 5, 5]], 6, [6, 6]), peaked([[2, 3, 4], [5, 5, 5]], 6, [6, 6])])
    scores = head_alignment_scores(weights, expected, torch.tensor([3, 0]), torch.tensor([6, 6]), tolerance=1)
    torch.testing.assert_close(scores, torch.tensor([2 / 3, 1.0]))  # 3 -> 4 -> 3 is near the path, but back


def test_choice_keeps_the_heads_near_the_best_and_every_head_when_none_aligns():
    assert choose_alignment_heads(torch.tensor([[0.5, 0.46], [0.44, 0.1]]), 0.9).tolist() == [[True, True],
                                                                                              [False, False]]
    assert choose_alignment_heads(torch.zeros(2, 3), 0.9).all()
