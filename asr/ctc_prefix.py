"""CTC prefix scores for joint CTC/attention beam search (Watanabe et al. 2017; ESPnet's CTCPrefixScoreTH).

The CTC prefix probability of a hypothesis h is the probability that the CTC output *starts* with h,
summed over every alignment. Beam search adds λ·(log ψ(g + c) − log ψ(g)) to each extension of g by c,
and the full-sequence probability when c is EOS.

Two parts, split so that the forward recursion runs only for the hypotheses that survive: `score`
gives ψ for every token after every hypothesis at once as one matrix product per utterance (or, with
a large vocabulary, for a few candidate tokens per hypothesis: ESPnet's partial scoring), and
`advance` computes the forward variables of the chosen extensions only (one per live beam), where
ESPnet runs its loop over frames for every candidate of every beam. The recursion itself is linear in
probabilities, so it is solved for all frames with cumulative sums instead of a loop."""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class CTCPrefixState:
    """Everything the scorer needs about N hypotheses that all hold `length` tokens."""
    forward: Tensor  # [T, 2, N] log r^b_t, r^n_t: prefix complete at frame t, last frame blank / not blank
    prefix_score: Tensor  # [N] log ψ of each prefix
    last_token: Tensor  # [N] last token of each prefix (SOS for the empty one)
    length: int


class CTCPrefixScorer:
    """Scores prefixes against the CTC posteriors of a batch, each utterance followed by `beam` hypotheses
    (rows n·beam … n·beam + beam − 1 belong to utterance n)."""

    def __init__(self, log_probs: Tensor, lengths: Tensor, blank: int, eos: int, beam: int = 1):
        # Frames past an utterance's end emit blank with certainty, so r^b carries the full-sequence
        # probability through to the last frame and no other token can be emitted there. One such frame
        # follows even the longest utterance, so that sums over "frames after the prefix" are never empty.
        log_probs = F.pad(log_probs, (0, 0, 0, 1))
        b, t, v = log_probs.shape
        padding = torch.arange(t, device=log_probs.device)[None, :] >= lengths[:, None]
        x = log_probs.masked_fill(padding[:, :, None], float("-inf"))
        x[:, :, blank] = x[:, :, blank].masked_fill(padding, 0.0)
        self.x = x.transpose(0, 1).contiguous()  # [T, B, V]: time-major, one frame is one slice
        # [B, V, T]: float64 keeps products down to e^-745; vocabulary-major, so that the frames of a few
        # candidate tokens are contiguous rows to gather (partial scoring)
        self.probs = x.double().exp().transpose(1, 2).contiguous()
        self.rows = torch.arange(b, device=log_probs.device).repeat_interleave(beam)
        self.beam, self.blank, self.eos = beam, blank, eos

    def initial_state(self) -> CTCPrefixState:
        """The empty prefix: only blanks so far, ψ = 1."""
        blanks = self.x[:, self.rows, self.blank].cumsum(dim=0)
        forward = torch.stack([blanks, torch.full_like(blanks, float("-inf"))], dim=1)
        return CTCPrefixState(forward, blanks.new_zeros(len(self.rows)), torch.full_like(self.rows, self.eos), 0)

    def score(self, state: CTCPrefixState, candidates: Optional[Tensor] = None) -> Tensor:
        """log ψ(g + c) for every token c after each hypothesis g, [N, V], or only for `candidates` [N, K]
        (token ids per hypothesis), [N, K]; for c = EOS, the full-sequence probability of g.
        ψ(g + c) = Σ_t φ_{t−1}(g) · y_t(c), where φ_{t−1}(g) is the probability that g is complete at
        frame t − 1: r^b + r^n, or only r^b when c repeats g's last token (CTC needs a blank between
        repeats). Except for that one token φ does not depend on c, so the sum over frames is one matrix
        product per utterance (per hypothesis for candidates), in probabilities scaled by each
        hypothesis' largest φ."""
        blank_end, token_end = state.forward[:, 0], state.forward[:, 1]
        # c's first frame: g needs `length` frames before it (φ is 0 earlier, so clamping is harmless)
        start = min(max(state.length, 1), self.x.shape[0] - 1)
        phi = torch.logaddexp(blank_end, token_end)[start - 1: -1]  # [T', N]
        scale = phi.max(dim=0).values.clamp(min=torch.finfo(phi.dtype).min)  # dead hypotheses: ψ = 0, no NaN
        weights = (phi - scale).double().exp().t()  # [N, T']
        if candidates is None:
            tokens = torch.arange(self.probs.shape[1], device=phi.device)[None, :]  # [1, V]
            by_utterance = weights.reshape(-1, self.beam, weights.shape[1])  # [B, beam, T']
            total = (by_utterance @ self.probs[:, :, start:].transpose(1, 2)).flatten(0, 1)  # [N, V]
        else:  # y_t(c) of each candidate [N, K, T'], by index_select: 3× faster than advanced indexing
            tokens = candidates
            rows = (self.rows[:, None] * self.probs.shape[1] + candidates).flatten()
            posteriors = self.probs.flatten(0, 1).index_select(0, rows).view(*candidates.shape, -1)[:, :, start:]
            total = (posteriors @ weights[:, :, None])[:, :, 0]  # [N, K]
        psi = total.log().to(phi.dtype) + scale[:, None]

        frames = self.x[start:, self.rows, state.last_token]  # [T', N] y_t(last token)
        repeat = (blank_end[start - 1: -1] + frames).logsumexp(dim=0)
        psi = torch.where(tokens == state.last_token[:, None], repeat[:, None], psi)
        if state.length == 0:  # c emitted at frame 0, right after the (empty) start
            psi = torch.logaddexp(psi, self.x[0, self.rows[:, None], tokens])
        return torch.where(tokens == self.eos, state.forward[-1].logsumexp(dim=0)[:, None], psi)

    def emission_frames(self, state: CTCPrefixState) -> Tensor:
        """[N] the frame at which each prefix's last token is most likely being emitted (argmax over t of
        r^n_t): where CTC's alignment says the hypothesis has got to; 0 for the empty prefix."""
        if state.length == 0:
            return torch.zeros_like(state.last_token)
        return state.forward[:, 1].argmax(dim=0)

    def advance(self, state: CTCPrefixState, parents: Tensor, tokens: Tensor, prefix_scores: Tensor) -> CTCPrefixState:
        """Forward variables of the extensions parent + token (tokens [N], never EOS), with their ψ from
        `score`. A prefix of L + 1 tokens cannot be complete before frame L, so the recursion starts there:
        r^n_t = (r^n_{t−1} ⊕ φ_{t−1}) · y_t(c), then r^b_t = (r^b_{t−1} ⊕ r^n_{t−1}) · y_t(blank), each
        solved for all frames at once."""
        forward, last = state.forward.index_select(2, parents), state.last_token[parents]
        blank_end, token_end = forward[:, 0], forward[:, 1]
        start = max(state.length, 1)
        emit = self.x[start:, self.rows[:, None], torch.stack([torch.full_like(tokens, self.blank), tokens], dim=1)]
        phi = torch.where(tokens == last, blank_end, torch.logaddexp(blank_end, token_end))  # [T, N]
        # r^n at frame start − 1: only the first token can be complete there, emitted at frame 0
        first = self.x[0, self.rows, tokens] if state.length == 0 else torch.full_like(prefix_scores, float("-inf"))
        r_n = log_linear_recurrence(first, phi[start - 1: -1], emit[:, :, 1])
        r_b = log_linear_recurrence(torch.full_like(first, float("-inf")),
                                    torch.cat([first[None], r_n[:-1]]), emit[:, :, 0])
        r = phi.new_full((self.x.shape[0], 2, len(tokens)), float("-inf"))
        r[start:, 0], r[start:, 1], r[start - 1, 1] = r_b, r_n, first
        return CTCPrefixState(r, prefix_scores, tokens, state.length + 1)


_IMPOSSIBLE = -1e10  # stands in for log 0 inside the cumulative sums, where −inf would give NaN


def log_linear_recurrence(initial: Tensor, inputs: Tensor, emit: Tensor) -> Tensor:
    """y_t = log(e^{y_{t−1}} + e^{inputs_t}) + emit_t along dim 0, with y_{−1} = initial, without a loop
    over frames: y_t = E_t + logcumsumexp_s(inputs_s − E_{s−1}), E the running sum of emit (float64,
    so that the two large terms cancel precisely)."""
    total = emit.double().clamp(min=_IMPOSSIBLE).cumsum(dim=0)
    before = torch.cat([total.new_zeros(1, *total.shape[1:]), total[:-1]])
    inputs = inputs.double().clone()
    inputs[0] = torch.logaddexp(inputs[0], initial.double())
    y = total + (inputs - before).logcumsumexp(dim=0)
    return y.masked_fill(y < _IMPOSSIBLE / 2, float("-inf")).to(emit.dtype)
