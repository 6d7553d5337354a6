"""Where each reference token sits in time, a penalty on cross-attention far from there (the guided
attention loss), and how closely each attention head follows it (to choose alignment heads). Batched
tensor code that knows nothing of the model."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def interleave_blanks(tokens: Tensor, blank: int) -> Tensor:
    """CTC's extended label sequence: blank, token 0, blank, token 1, ..., blank; [B, L] -> [B, 2L + 1].
    Padding (negative ids) becomes blank; those states lie past each utterance's last one."""
    b, n = tokens.shape
    extended = tokens.new_full((b, 2 * n + 1), blank)
    extended[:, 1::2] = tokens.masked_fill(tokens < 0, blank)
    return extended


def ctc_forced_align(log_probs: Tensor, lengths: Tensor, tokens: Tensor, token_lengths: Tensor,
                     blank: int) -> Tuple[Tensor, Tensor]:
    """The frame on which each reference token starts in the best (Viterbi) CTC path: frames [B, L]
    (-1 for padding tokens and infeasible utterances) and `feasible` [B], False where T frames cannot
    hold the tokens (a repeated token needs a blank between its copies).

    log_probs [B, T, V]; lengths [B]; tokens [B, L] padded with negative ids; token_lengths [B].
    No gradient flows through it."""
    path, feasible = ctc_best_path(log_probs, lengths, tokens, token_lengths, blank)
    return first_frames(path, lengths, tokens.shape[1]), feasible


def ctc_token_spans(log_probs: Tensor, lengths: Tensor, tokens: Tensor, token_lengths: Tensor,
                    blank: int) -> Tuple[Tensor, Tensor, Tensor]:
    """As ctc_forced_align, with the last frame on each token too: first [B, L], last [B, L], feasible [B].
    A token holds the frames [first, last] of the path; the blanks around it belong to no token."""
    path, feasible = ctc_best_path(log_probs, lengths, tokens, token_lengths, blank)
    return first_frames(path, lengths, tokens.shape[1]), last_frames(path, lengths, tokens.shape[1]), feasible


def ctc_best_path(log_probs: Tensor, lengths: Tensor, tokens: Tensor, token_lengths: Tensor,
                  blank: int) -> Tuple[Tensor, Tensor]:
    """The best CTC path's extended-sequence state on every frame [B, T] (see backtrace), and `feasible` [B]."""
    log_probs = log_probs.detach().float()
    b, t_max, _ = log_probs.shape
    extended = interleave_blanks(tokens, blank)
    emissions = log_probs.gather(2, extended[:, None, :].expand(b, t_max, extended.shape[1]))  # [B, T, S]
    scores, moves = viterbi(emissions, extended)
    last = scores[torch.arange(b, device=scores.device), lengths - 1]  # [B, S] at each utterance's last frame
    ends = torch.stack([2 * token_lengths, (2 * token_lengths - 1).clamp(min=0)], dim=1)  # final blank, last token
    end_scores, which = last.gather(1, ends).max(dim=1)
    return backtrace(moves, ends.gather(1, which[:, None]), lengths), torch.isfinite(end_scores)


def viterbi(emissions: Tensor, extended: Tensor) -> Tuple[Tensor, Tensor]:
    """Best path scores over CTC's topology: each frame stays on a state, moves to the next, or skips a
    blank between different tokens. Returns every frame's scores [B, T, S] and how many states back
    each state's best predecessor on the frame before lay [B, T, S] (0 on frame 0). A loop over time,
    batched over utterances and states; frames past an utterance's end are scored too, and ignored."""
    n_states = extended.shape[1]
    states = torch.arange(n_states, device=emissions.device)
    may_skip = (states % 2 == 1) & (states >= 2) & (extended != extended.roll(2, dims=1))
    skip_cost = torch.zeros_like(emissions[:, 0]).masked_fill(~may_skip, float("-inf"))
    score = emissions[:, 0].masked_fill(states >= 2, float("-inf"))
    scores, moves = [score], [torch.zeros_like(states).expand_as(score)]
    for t in range(1, emissions.shape[1]):
        padded = F.pad(score, (2, 0), value=float("-inf"))
        best, move = torch.stack([score, padded[:, 1:-1], padded[:, :-2] + skip_cost]).max(dim=0)
        score = best + emissions[:, t]
        scores.append(score)
        moves.append(move)
    return torch.stack(scores, dim=1), torch.stack(moves, dim=1)


def backtrace(moves: Tensor, end_state: Tensor, lengths: Tensor) -> Tensor:
    """The best path's state on every frame [B, T], from its state on each utterance's last frame
    [B, 1]; past that frame it stays there. Vectorised over the batch."""
    t_max = moves.shape[1]
    ended = torch.arange(t_max, device=moves.device) >= lengths[:, None]  # [B, T]
    state, path = end_state, [end_state]
    for t in range(t_max - 1, 0, -1):
        state = torch.where(ended[:, t: t + 1], state, state - moves[:, t].gather(1, state))
        path.append(state)
    return torch.cat(path[::-1], dim=1)


def frame_tokens(path: Tensor, lengths: Tensor, n_tokens: int) -> Tuple[Tensor, Tensor]:
    """Which token the path is on at every frame [B, T] (n_tokens on blanks and past the end), and the
    frame numbers [B, T]."""
    b, t_max = path.shape
    frames = torch.arange(t_max, device=path.device).expand(b, t_max)
    on_token = (path % 2 == 1) & (frames < lengths[:, None])
    return torch.where(on_token, path // 2, n_tokens), frames


def first_frames(path: Tensor, lengths: Tensor, n_tokens: int) -> Tensor:
    """For a path of extended-sequence states [B, T], the first frame on each token's state [B, L],
    -1 for tokens the path never visits (padding, or every token of an infeasible utterance)."""
    token, frames = frame_tokens(path, lengths, n_tokens)
    t_max = path.shape[1]
    first = path.new_full((len(path), n_tokens + 1), t_max).scatter_reduce(1, token, frames, "amin")[:, :n_tokens]
    return first.masked_fill(first == t_max, -1)


def last_frames(path: Tensor, lengths: Tensor, n_tokens: int) -> Tensor:
    """As first_frames, the last frame on each token's state [B, L]."""
    token, frames = frame_tokens(path, lengths, n_tokens)
    return path.new_full((len(path), n_tokens + 1), -1).scatter_reduce(1, token, frames, "amax")[:, :n_tokens]


def diagonal_frames(token_lengths: Tensor, memory_lengths: Tensor, n_tokens: int) -> Tensor:
    """The straight-line guess [B, L]: token i of N at the centre of the i-th of N equal shares of the
    T frames, for when no alignment is known."""
    share = memory_lengths[:, None].float() / token_lengths[:, None].clamp(min=1)
    return (torch.arange(n_tokens, device=share.device) + 0.5) * share - 0.5


def query_frames(token_frames: Tensor, token_lengths: Tensor, memory_lengths: Tensor) -> Tensor:
    """The frame each decoder query should attend to [B, L + 1], from each token's frame [B, L]: query i
    predicts token i, so it expects that token's frame; the query predicting EOS expects the last frame."""
    last = (memory_lengths - 1).to(token_frames.dtype)[:, None]
    return torch.cat([token_frames, last], dim=1).scatter(1, token_lengths[:, None], last)


def guided_attention_penalty(weights: Tensor, expected: Tensor, query_lengths: Tensor, memory_lengths: Tensor,
                             sigma: float) -> Tensor:
    """Attention mass away from the expected frame, each frame weighted by 1 − exp(−(t − e)² / 2σ²):
    0 on the path, towards 1 beyond a few σ (σ in encoder frames). Summed over the valid (query, frame)
    pairs, divided by each utterance's valid queries, averaged over the batch.

    weights [B, Q, T] (attention probabilities); expected [B, Q] (frames, float)."""
    q_max, t_max = weights.shape[1:]
    frames = torch.arange(t_max, device=weights.device)
    cost = -torch.expm1(-(frames - expected[..., None]).square() / (2 * sigma ** 2))  # [B, Q, T]
    valid = ((torch.arange(q_max, device=weights.device) < query_lengths[:, None])[:, :, None]
             & (frames < memory_lengths[:, None])[:, None, :])
    per_utterance = (weights * cost).masked_fill(~valid, 0.0).sum(dim=(1, 2)) / query_lengths.clamp(min=1)
    return per_utterance.mean()


def head_alignment_scores(weights: Tensor, expected: Tensor, query_lengths: Tensor, memory_lengths: Tensor,
                          tolerance: float) -> Tensor:
    """How closely each head's attention follows the expected path: the share of valid queries whose
    attention peaks within `tolerance` encoder frames of their expected frame and not before the
    previous query's peak (a head following the audio moves forward with the text).

    weights [..., B, Q, T] (attention probabilities, e.g. [layers, heads, B, Q, T]); expected [B, Q]
    (frames); query_lengths [B] (0 leaves an utterance out). Returns [...], each in [0, 1]."""
    q_max, t_max = weights.shape[-2:]
    padding = torch.arange(t_max, device=weights.device) >= memory_lengths[:, None, None]  # [B, 1, T]
    peaks = weights.masked_fill(padding, -1.0).argmax(dim=-1)  # [..., B, Q]
    near = (peaks - expected).abs() <= tolerance
    forward = peaks >= F.pad(peaks[..., :-1], (1, 0))  # the first query has nothing before it
    valid = torch.arange(q_max, device=weights.device) < query_lengths[:, None]  # [B, Q]
    return (near & forward & valid).sum(dim=(-2, -1)) / valid.sum().clamp(min=1)


def choose_alignment_heads(scores: Tensor, share_of_best: float) -> Tensor:
    """The heads worth trusting, bool shaped as `scores`: those scoring at least `share_of_best` of the
    best head's score. The best head always counts; when no head scores at all, every head does, which
    is what decoding uses without a choice."""
    return scores >= share_of_best * scores.max()
