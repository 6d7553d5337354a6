"""The CTC prefix scorer against brute force: every one of the V^T alignments, collapsed."""
import itertools
import math

import torch
import torch.nn.functional as F

from asr.ctc_prefix import CTCPrefixScorer

BLANK, EOS = 0, 2


def collapse(path):
    out, previous = [], None
    for symbol in path:
        if symbol != previous and symbol != BLANK:
            out.append(symbol)
        previous = symbol
    return out


def brute_force(log_probs, prefix, complete=False):
    """log Σ P(alignment) over alignments whose collapsed output starts with (or, if complete, equals)
    the prefix."""
    t, v = log_probs.shape
    total = 0.0
    for path in itertools.product(range(v), repeat=t):
        out = collapse(path)
        if (out == list(prefix)) if complete else (out[: len(prefix)] == list(prefix)):
            total += math.exp(sum(log_probs[i, s].item() for i, s in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def random_log_probs(b, t, v, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, v, generator=generator, dtype=torch.float64).mul(1.5).log_softmax(-1)


def score_prefix(scorer, state, prefix, candidates):
    """Walks one prefix token by token through score/advance; returns the final state and the
    scores of `candidates` after it."""
    for token in prefix:
        n = len(state.last_token)
        tokens = torch.full((n,), token)
        psi = scorer.score(state).gather(1, tokens[:, None])[:, 0]
        state = scorer.advance(state, torch.arange(n), tokens, psi)
    return state, scorer.score(state)[:, candidates]


def test_prefix_scores_match_brute_force_including_repeats():
    t, v = 5, 4
    log_probs = random_log_probs(1, t, v)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([t]), BLANK, EOS)
    tokens = [1, 3]  # non-blank, non-EOS
    candidates = [1, 3, EOS]
    for length in range(3):
        for prefix in itertools.product(tokens, repeat=length):  # includes repeats such as (3, 3)
            state, scores = score_prefix(scorer, scorer.initial_state(), prefix, candidates)
            assert close(state.prefix_score.item(), brute_force(log_probs[0], prefix))
            for c, s in zip([1, 3], scores[0, :2].tolist()):
                assert close(s, brute_force(log_probs[0], prefix + (c,))), (prefix, c)
            assert close(scores[0, 2].item(), brute_force(log_probs[0], prefix, complete=True))


def test_full_sequence_probability_matches_ctc_loss_with_padding_and_beams():
    """A batch of unequal lengths, two hypotheses per utterance: EOS scores equal −ctc_loss."""
    t, v, beam = 9, 6, 2
    log_probs = random_log_probs(2, t, v, seed=1)
    lengths = torch.tensor([9, 6])
    scorer = CTCPrefixScorer(log_probs, lengths, BLANK, EOS, beam=beam)
    prefixes = [[3, 3, 4], [5, 1, 3], [4, 4, 4], [1, 5, 5]]  # rows: utterance 0, 0, 1, 1
    state = scorer.initial_state()
    for step in range(3):
        tokens = torch.tensor([p[step] for p in prefixes])
        psi = scorer.score(state).gather(1, tokens[:, None])[:, 0]
        state = scorer.advance(state, torch.arange(4), tokens, psi)
    eos = scorer.score(state)[:, EOS]
    expected = -F.ctc_loss(log_probs.repeat_interleave(beam, 0).transpose(0, 1), torch.tensor(prefixes),
                           lengths.repeat_interleave(beam), torch.full((4,), 3), blank=BLANK, reduction="none")
    torch.testing.assert_close(eos, expected)


def test_short_utterance_in_batch_scores_like_alone():
    t, v = 5, 4
    log_probs = random_log_probs(2, t, v, seed=2)
    batched = CTCPrefixScorer(log_probs, torch.tensor([5, 3]), BLANK, EOS)
    alone = CTCPrefixScorer(log_probs[1:, :3], torch.tensor([3]), BLANK, EOS)
    candidates = [1, 3, EOS]
    _, together = score_prefix(batched, batched.initial_state(), (3,), candidates)
    _, single = score_prefix(alone, alone.initial_state(), (3,), candidates)
    torch.testing.assert_close(together[1:], single)
    for c, s in zip([1, 3], single[0, :2].tolist()):
        assert close(s, brute_force(log_probs[1, :3], (3, c)))


def test_advance_follows_chosen_parents():
    """Reordering: the extension of parent p must score as if p had been extended in place."""
    log_probs = random_log_probs(1, 5, 4, seed=3)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([5]), BLANK, EOS, beam=2)
    state = scorer.initial_state()
    first = torch.tensor([1, 3])
    state = scorer.advance(state, torch.arange(2), first, scorer.score(state).gather(1, first[:, None])[:, 0])
    swapped = scorer.advance(state, torch.tensor([1, 0]), torch.tensor([3, 3]), torch.zeros(2))
    scores = scorer.score(swapped)[:, 1]
    assert close(scores[0].item(), brute_force(log_probs[0], (3, 3, 1)))
    assert close(scores[1].item(), brute_force(log_probs[0], (1, 3, 1)))


def test_emission_frames_find_where_each_last_token_spikes():
    """Posteriors that say blank everywhere but token 1 at frame 2 and token 3 at frame 6: the prefix
    (1) has got to frame 2, the prefix (1, 3) to frame 6, and the empty prefix is at frame 0."""
    t, v = 10, 5
    probs = torch.full((1, t, v), 0.01)
    probs[0, :, BLANK] = 0.96
    probs[0, 2], probs[0, 6] = torch.tensor([0.02, 0.94, 0.02, 0.01, 0.01]), torch.tensor([0.02, 0.01, 0.01, 0.94, 0.02])
    scorer = CTCPrefixScorer(probs.log(), torch.tensor([t]), BLANK, EOS, beam=1)
    state = scorer.initial_state()
    assert scorer.emission_frames(state).tolist() == [0]
    for token, frame in ((1, 2), (3, 6)):
        tokens = torch.tensor([token])
        state = scorer.advance(state, torch.tensor([0]), tokens, scorer.score(state).gather(1, tokens[:, None])[:, 0])
        assert scorer.emission_frames(state).tolist() == [frame]


def test_partial_scores_equal_full_scores():
    """Scoring only candidate tokens (each row's own ids, in any order) gives exactly the full matrix's
    entries, at every step, with repeats, EOS, padding and several beams."""
    t, v, beam = 9, 6, 2
    log_probs = random_log_probs(2, t, v, seed=4)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([9, 6]), BLANK, EOS, beam=beam)
    prefixes = [[3, 3, 4], [5, 1, 3], [4, 4, 4], [1, 5, 5]]
    generator = torch.Generator().manual_seed(0)
    state = scorer.initial_state()
    for step in range(4):
        candidates = torch.stack([torch.randperm(v, generator=generator) for _ in prefixes])
        partial = scorer.score(state, candidates)
        assert torch.equal(partial, scorer.score(state).gather(1, candidates))
        assert torch.equal(scorer.score(state, candidates[:, :2]), partial[:, :2])
        if step < 3:
            tokens = torch.tensor([p[step] for p in prefixes])
            state = scorer.advance(state, torch.arange(4), tokens, scorer.score(state, tokens[:, None])[:, 0])
    for c, s in zip(candidates[3].tolist(), partial[3].tolist()):  # (1, 5, 5) in utterance 1's 6 frames
        if c not in (BLANK, EOS):
            assert close(s, brute_force(log_probs[1, :6], (1, 5, 5, c))) and s > -math.inf
