"""Greedy search and joint CTC/attention beam search over a trained ASRModel, batched over utterances
(and beams) with the decoder's KV cache, plus three attention rules that stop the decoder from
skipping or repeating audio: a monotonic cross-attention window, "EOS only near the end" and a loop guard.

All bookkeeping is tensors of shape [utterances × beams]; the only Python loop is over output steps."""
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .ctc_prefix import CTCPrefixScorer, CTCPrefixState
from .lm import CharLM, reorder_state
from .model import ASRModel


def _option(default, help: str):
    """A field whose help text the command line shows (its flags are generated from these fields)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DecodingOptions:
    beam_size: int = _option(10, "1 = greedy search on the attention decoder alone")
    nbest: int = _option(1, "hypotheses returned per input, at most beam_size")
    ctc_weight: float = _option(0.3, "λ in (1 − λ)·attention + λ·CTC prefix score (beam search); 0 = no CTC")
    # 0.1: the best of 0.1 / 0.2 / 0.4 on speechocean762 dev (BENCHMARKS.md, "Generalisation")
    lm_weight: float = _option(0.1, "β: beam search adds β·log P_LM(token) when a language model is given "
                                    "(--lm); ignored without one")
    # Partial scoring (ESPnet's pre-beam): CTC prefix scores cost O(beams × tokens × frames) a step, so
    # with many tokens only these candidates are scored. 64 is above every alphabet here (at most 31
    # tokens), whose search stays exactly as before; at 4,500 (Mandarin) beam 10 + CTC went from 6.5 to
    # 5.2 ms a step, 29.6 to 23.0 for 8 utterances at once (bench/vocab.py, a busy 2-core CPU)
    ctc_pre_beam: int = _option(64, "with CTC, extend each hypothesis only by its k best tokens by attention "
                                    "and CTC-score only those; 0 or at least the vocabulary = every token")
    length_penalty: float = _option(1.0, "α: finished hypotheses rank by score / length**α (EOS counted); "
                                         "0 = by total score")
    length_bonus: float = _option(0.0, "added to the score per token, before normalising (ESPnet's penalty)")
    max_length_ratio: float = _option(1.0, "at most this many tokens per encoder frame")
    max_tokens: int = _option(1000, "and never more tokens than this")
    min_tokens: int = _option(0, "EOS forbidden before this many tokens")
    # Off by default: on the recipes' models the window never beat CTC prefix scoring alone
    # (BENCHMARKS.md, "Search settings").
    window_back: Optional[int] = _option(None, "encoder frames cross-attention may move back per step from the "
                                               "frame the previous step attended; none = no limit")
    window_forward: Optional[int] = _option(None, "encoder frames cross-attention may move forward per step; "
                                                  "none = no limit")
    window_from: str = _option("attention", "what the window follows: the frame the previous step attended "
                                            "(attention), or the frame at which CTC's best alignment of the "
                                            "hypothesis emits its last character (ctc: triggered attention; a "
                                            "search without CTC scores, greedy or ctc_weight 0, then has no "
                                            "window, which on every model measured beat the attention one)")
    eos_near_end: Optional[int] = _option(None, "EOS only while attending within this many frames of the end; "
                                                "none = anywhere")
    loop_guard: Optional[int] = _option(None, "an n-gram just said twice (n up to this many tokens) may not go on "
                                              "while cross-attention is not past where its last copy was read: "
                                              "a loop; none = off")
    # 32, chosen on fsdd_connected dev_long (recipes/fsdd_connected/conf/train.yaml); the library's default is off
    decoder_context: Optional[int] = _option(None, "on recordings longer than the longest training utterance, the "
                                                   "Transformer decoder reads at most this many positions: then each "
                                                   "hypothesis' decoder starts again from BOS and its last half of "
                                                   "them, so a long transcript never takes it past the lengths it "
                                                   "trained on; none = no limit")
    chunk_seconds: Optional[float] = _option(None, "recordings longer than this are cut at their quietest moments "
                                                   "and decoded in pieces; 0 = always whole; none = the longest "
                                                   "utterance the model was trained on")
    # half, chosen on fsdd_connected dev_long (cut at pauses, BENCHMARKS.md "Long recordings decoded whole"):
    # 1.74 % CER against 2.01 % in pieces as long as the longest training utterance (2.5 s: 1.69 %, 5 s: 1.74 %)
    piece_seconds: Optional[float] = _option(None, "a recording cut at pauses is cut into pieces of at most this "
                                                   "long; none = half of chunk_seconds' limit, near the length "
                                                   "of most training utterances rather than of the longest")
    encoder_window_seconds: Optional[float] = _option(None, "the encoder reads recordings longer than this in "
                                                            "overlapping windows of this length, so it never "
                                                            "meets positions it did not train on; 0 = whole; "
                                                            "none = the longest utterance the model was trained on")
    # ctc by default, chosen on fsdd_connected dev (100 utterances, the English recipe's model,
    # bench/timestamps.py): median word-boundary error 67 ms (95th percentile 202 ms) against attention's 591 ms
    timestamps: str = _option("ctc", "word times from the CTC head's forced alignment of the best hypothesis "
                                     "(ctc) or from the frames its decoder attended to (attention)")
    # 0.3 s and 3 dB, chosen on fsdd_connected dev (bench/timestamps.py, the recipe's model), with
    # neighbours meeting at their quietest moment: word-boundary error 11 ms at the median (95th
    # percentile 87 ms) against 61 ms (197 ms) unsnapped
    snap_seconds: float = _option(0.3, "neighbouring words meet at the quietest moment between them, and word "
                                       "starts and ends move out to the edges of the speech they lie in (from "
                                       "a pause, to the nearest speech) within this many seconds; 0 = off")
    snap_db: float = _option(3.0, "a 25 ms window is speech when this many dB above the recording's "
                                  "quietest tenth")

    @property
    def ctc_scored(self) -> bool:
        return self.beam_size > 1 and self.ctc_weight > 0

    @property
    def window(self) -> "AttentionWindow":
        """The window the search applies: none where it would follow CTC but has no CTC scores."""
        if self.window_from == "ctc" and not self.ctc_scored:
            return AttentionWindow(None, None)
        return AttentionWindow(self.window_back, self.window_forward)

    @property
    def follows_ctc(self) -> bool:
        return self.window_from == "ctc" and self.ctc_scored

    def __post_init__(self):
        if self.beam_size < 1 or not 1 <= self.nbest <= self.beam_size:
            raise ValueError(f"need beam_size >= 1 and 1 <= nbest <= beam_size, got {self.beam_size}, {self.nbest}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if self.lm_weight < 0:
            raise ValueError(f"lm_weight must be >= 0, got {self.lm_weight}")
        if self.ctc_pre_beam < 0:
            raise ValueError(f"ctc_pre_beam must be >= 0, got {self.ctc_pre_beam}")
        if self.max_tokens < 1 or self.max_length_ratio <= 0:
            raise ValueError("max_tokens and max_length_ratio must be positive")
        for name in ("window_back", "window_forward", "eos_near_end", "loop_guard"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0 or None")
        if self.decoder_context is not None and self.decoder_context < 4:
            raise ValueError(f"decoder_context must be at least 4 tokens or None, got {self.decoder_context}")
        if self.piece_seconds is not None and self.piece_seconds <= 0:
            raise ValueError(f"piece_seconds must be > 0 or none, got {self.piece_seconds}")
        for name in ("chunk_seconds", "encoder_window_seconds"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = whole) or none, got {getattr(self, name)}")
        if self.window_from not in ("attention", "ctc"):
            raise ValueError(f"window_from must be attention or ctc, got {self.window_from!r}")
        if self.snap_seconds < 0:
            raise ValueError(f"snap_seconds must be >= 0 (0 = off), got {self.snap_seconds}")
        if self.timestamps not in ("ctc", "attention"):
            raise ValueError(f"timestamps must be ctc or attention, got {self.timestamps!r}")


@dataclass
class DecodingResult:
    tokens: List[int]  # without EOS
    score: float  # the ranking score: (log-probability + bonus·length) / length**α
    frames: List[int]  # per token, the encoder frame its cross-attention peaked on: time = frame·subsampling·hop/sr
    nbest: List[Tuple[List[int], float]]  # best first, the first is (tokens, score)
    loop_guard_fired: int  # steps of the best at which the loop guard forbade the token its decoder ranked first


class LengthNorm:
    """Ranking score of a finished hypothesis, and the best one a live hypothesis could still reach:
    its log-probability only falls, so the best is the maximum over the lengths it may end at."""

    def __init__(self, alpha: float, bonus: float):
        self.alpha, self.bonus = alpha, bonus

    def __call__(self, logprob: Tensor, length) -> Tensor:
        length = torch.as_tensor(length, dtype=logprob.dtype, device=logprob.device)
        return (logprob + self.bonus * length) / length ** self.alpha

    def best_reachable(self, logprob: Tensor, length: int, max_length: Tensor) -> Tensor:
        """logprob [N] of live prefixes of `length` tokens that must end (EOS counted) by max_length [N]."""
        ends = torch.arange(length + 1, max(length + 1, int(max_length.max())) + 1, device=logprob.device)
        scores = self(logprob[:, None], ends[None, :]).masked_fill(ends[None, :] > max_length[:, None], float("-inf"))
        return scores.max(dim=1).values


class AttentionWindow:
    """Cross-attention may only look at frames [last − back, last + forward]. The frame attended last is
    always inside and always a real frame, so at least one frame is allowed."""

    def __init__(self, back: Optional[int], forward: Optional[int]):
        self.back, self.forward = back, forward

    def mask(self, last_frame: Tensor, num_frames: int) -> Optional[Tensor]:
        """[N, T] True = may attend, or None when the window is off."""
        if self.back is None and self.forward is None:
            return None
        offset = torch.arange(num_frames, device=last_frame.device)[None, :] - last_frame[:, None]
        allowed = torch.ones_like(offset, dtype=torch.bool)
        if self.back is not None:
            allowed &= offset >= -self.back
        if self.forward is not None:
            allowed &= offset <= self.forward
        return allowed


class LoopGuard:
    """A looping attention decoder reads audio it has already transcribed again, while a real repetition
    ("five five five") moves on through the audio. So once a hypothesis' last 2n tokens are one n-gram
    twice (n ≤ `longest`), the token that would go on repeating it, the one n back, is forbidden unless
    the frame attended now is past the frame that token was read at. Never EOS: ending leaves a loop."""

    def __init__(self, longest: Optional[int], vocab_size: int, eos: int, device: torch.device):
        self.longest, self.vocab_size, self.eos = longest or 0, vocab_size, eos
        period = torch.arange(1, self.longest + 1, device=device)
        self.outside = torch.arange(self.longest, device=device)[None, :] >= period[:, None]  # [n - 1, j]: j ≥ n

    def forbidden(self, history: Tensor, frames: Tensor, frame: Tensor) -> Optional[Tensor]:
        """[N, V] True = forbidden, or None when no n-gram fits twice, for hypotheses holding tokens
        `history` [N, L] read at `frames` [N, L] that attend `frame` [N] now."""
        k = min(self.longest, history.shape[1] // 2)
        if k == 0:
            return None
        back = history[:, -2 * k:].flip(1).unfold(1, k, 1)  # [N, s, j]: the token s + j before the last one
        # per period n, tokens j < n back equal those n further back; a sum, as all() over bools is slower
        twice = ((back[:, 1:] == back[:, :1]) | self.outside[:k, :k]).sum(dim=2) == k  # [N, periods]
        again = back[:, 0]  # per period n, the token n back and the frame it was read at
        blocked = twice & (frame[:, None] <= frames[:, -k:].flip(1)) & (again != self.eos)
        forbidden = torch.zeros(len(history), self.vocab_size + 1, dtype=torch.bool, device=history.device)
        return forbidden.scatter_(1, again.masked_fill(~blocked, self.vocab_size), True)[:, :-1]


class TokenRules:
    """Tokens a step may not emit: blank (a CTC symbol) always; EOS before min_tokens or while attending
    far from the end; anything but EOS once an utterance has reached its maximum length."""

    def __init__(self, options: DecodingOptions, vocab_size: int, blank: int, eos: int):
        self.min_tokens, self.eos_margin = options.min_tokens, options.eos_near_end
        self.blank, self.eos = blank, eos
        self.only_eos = torch.arange(vocab_size) != eos

    def forbidden(self, step: int, frame: Tensor, memory_lengths: Tensor, max_tokens: Tensor) -> Tensor:
        """[N, V] True = forbidden, for hypotheses holding `step` tokens that attend `frame` now."""
        n, v = len(frame), len(self.only_eos)
        forbidden = torch.zeros(n, v, dtype=torch.bool, device=frame.device)
        forbidden[:, self.blank] = True
        eos_blocked = torch.full_like(forbidden[:, 0], step < self.min_tokens)
        if self.eos_margin is not None:
            eos_blocked |= frame < memory_lengths - self.eos_margin
        forbidden[:, self.eos] = eos_blocked
        return torch.where((step >= max_tokens)[:, None], self.only_eos.to(frame.device)[None, :], forbidden)


class DecoderStep:
    """One cached decoder step for N hypotheses: the window applied, log-probabilities, the tokens the
    rules and the loop guard forbid, and the frame each hypothesis attends (argmax of cross-attention
    averaged over the model's alignment heads: every head of every layer unless some were chosen).
    `guard_fired` [N] counts, along each hypothesis' path, the steps at which the guard forbade the
    token the decoder ranked first among those the rules allow."""

    def __init__(self, model: ASRModel, memory: Tensor, memory_lengths: Tensor, options: DecodingOptions):
        self.decoder, self.memory_lengths, self.num_frames = model.decoder, memory_lengths, memory.shape[1]
        limit = (memory_lengths * options.max_length_ratio).floor().long()
        self.max_tokens = limit.clamp(min=1, max=options.max_tokens)
        self.max_steps = int(self.max_tokens.max()) + 1  # the last step can only emit EOS
        # only a decoder with positions has lengths it never trained on (not the LSTM)
        self.context = options.decoder_context if hasattr(model.decoder, "positions") else None
        positions = min(self.max_steps, self.context or self.max_steps)
        if positions > model.cfg.max_positions:
            raise ValueError(f"max_tokens={options.max_tokens} is beyond the decoder's "
                             f"{model.cfg.max_positions} positions")
        self.cache = model.decoder.init_cache(memory, memory_lengths, positions)
        self.window = options.window
        self.anchors = self.max_tokens.new_zeros(len(self.max_tokens), 0)  # [N, ≤ context // 2]: the last steps' anchors
        self.rules = TokenRules(options, model.cfg.vocab_size, model.blank, model.sos_eos)
        self.guard = LoopGuard(options.loop_guard, model.cfg.vocab_size, model.sos_eos, memory.device)
        self.guard_fired = torch.zeros_like(self.max_tokens)
        self.sos = model.sos_eos
        self.heads = model.alignment_heads.flatten().nonzero()[:, 0]  # indices, found once: no sync per step

    def attention(self, weights: Tensor) -> Tensor:
        """Cross-attention [N, layers, heads, T] -> its mean over the alignment heads [N, T]."""
        return weights.flatten(1, 2).index_select(1, self.heads).mean(dim=1)

    def __call__(self, history: Tensor, frames: Tensor, anchor: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """history, frames [N, L]: each hypothesis' tokens so far and the frame each was read at.
        anchor [N]: the frame the window follows, when not the one attended last (window_from ctc)."""
        step = history.shape[1]
        tokens = history[:, -1] if step else torch.full_like(self.max_tokens, self.sos)
        if anchor is None:
            anchor = frames[:, -1] if step else torch.zeros_like(self.max_tokens)
        if self.context:
            if self.cache.length == self.context:
                self.restart(history)
            self.anchors = torch.cat([self.anchors, anchor[:, None]], dim=1)[:, -(self.context // 2):]
        logits, weights = self.decoder.step(tokens, self.cache, self.window.mask(anchor, self.num_frames))
        logp = logits.float().log_softmax(dim=-1)
        frame = self.attention(weights).argmax(dim=-1)
        forbidden = self.rules.forbidden(step, frame, self.memory_lengths, self.max_tokens)
        looping = self.guard.forbidden(history, frames, frame)
        if looping is not None:
            first_choice = logp.masked_fill(forbidden, float("-inf")).argmax(dim=-1, keepdim=True)
            self.guard_fired += looping.gather(1, first_choice)[:, 0]
            forbidden |= looping
        return logp, forbidden, frame

    def restart(self, history: Tensor) -> None:
        """The decoder's cache rebuilt from BOS and the tokens before the last of `history`, the last
        context // 2 − 1 of them, each read under the window it was read under the first time; the step
        that follows feeds the last token at position context // 2."""
        kept = self.context // 2
        self.cache.length = 0
        fed = torch.cat([torch.full_like(history[:, :1], self.sos), history[:, -kept:-1]], dim=1)
        for tokens, anchor in zip(fed.T, self.anchors.T):
            self.decoder.step(tokens, self.cache, self.window.mask(anchor, self.num_frames), need_weights=False)

    def reorder(self, index: Tensor) -> None:
        """Rows continue from rows `index` of the same utterance (cache, anchors and guard counts)."""
        self.cache = self.cache.reorder(index, same_memory=True)
        self.guard_fired = self.guard_fired[index]
        self.anchors = self.anchors[index]


class FinishedHypotheses:
    """The `size` best ended hypotheses of each utterance, sorted, as tensors [B, size, ...]."""

    def __init__(self, batch: int, size: int, max_length: int, eos: int, device: torch.device):
        self.scores = torch.full((batch, size), float("-inf"), device=device)
        self.tokens = torch.full((batch, size, max_length), eos, dtype=torch.long, device=device)
        self.frames = torch.zeros((batch, size, max_length), dtype=torch.long, device=device)
        self.lengths = torch.zeros((batch, size), dtype=torch.long, device=device)
        self.guard_fired = torch.zeros_like(self.lengths)
        self.eos = eos

    def add(self, scores: Tensor, tokens: Tensor, frames: Tensor, guard_fired: Tensor) -> None:
        """scores [B, M] (−inf = not ended), tokens and frames [B, M, L] without EOS, guard_fired [B, M]."""
        pad = self.tokens.shape[2] - tokens.shape[2]
        tokens = torch.cat([self.tokens, F.pad(tokens, (0, pad), value=self.eos)], dim=1)
        frames = torch.cat([self.frames, F.pad(frames, (0, pad))], dim=1)
        lengths = torch.cat([self.lengths, self.lengths.new_full(scores.shape, tokens.shape[2] - pad)], dim=1)
        self.scores, best = torch.cat([self.scores, scores], dim=1).topk(self.scores.shape[1], dim=1)
        self.tokens = tokens.gather(1, best[:, :, None].expand(-1, -1, tokens.shape[2]))
        self.frames = frames.gather(1, best[:, :, None].expand(-1, -1, frames.shape[2]))
        self.lengths = lengths.gather(1, best)
        self.guard_fired = torch.cat([self.guard_fired, guard_fired], dim=1).gather(1, best)

    def results(self, nbest: int) -> List[DecodingResult]:
        return to_results(self.scores[:, :nbest], self.lengths[:, :nbest], self.tokens[:, :nbest],
                          self.frames[:, :nbest], self.guard_fired[:, 0])


def to_results(scores: Tensor, lengths: Tensor, tokens: Tensor, frames: Tensor,
               guard_fired: Tensor) -> List[DecodingResult]:
    """Hypotheses [B, M] best first (tokens and frames [B, M, L], cut at lengths) and the best's guard
    count [B] -> one result per utterance, listing the ended ones (always at least one: −inf when every
    hypothesis died)."""
    results = []
    for s, n, t, f, g in zip(scores.tolist(), lengths.tolist(), tokens.tolist(), frames.tolist(), guard_fired.tolist()):
        hyps = [(t[i][: n[i]], s[i]) for i in range(len(s)) if i == 0 or s[i] > float("-inf")]
        results.append(DecodingResult(hyps[0][0], hyps[0][1], f[0][: n[0]], hyps, g))
    return results


def greedy_search(model: ASRModel, memory: Tensor, memory_lengths: Tensor,
                  options: DecodingOptions) -> List[DecodingResult]:
    """The attention decoder's most likely token at every step, for all utterances at once."""
    b, eos = len(memory_lengths), model.sos_eos
    step_once = DecoderStep(model, memory, memory_lengths, options)
    history = frames = torch.zeros((b, 0), dtype=torch.long, device=memory.device)
    ended = torch.zeros(b, dtype=torch.bool, device=memory.device)
    logprob = torch.zeros(b, device=memory.device)
    for _ in range(step_once.max_steps):
        logp, forbidden, frame = step_once(history, frames)
        best, tokens = logp.masked_fill(forbidden, float("-inf")).max(dim=-1)
        tokens = tokens.masked_fill(ended, eos)
        logprob += best.masked_fill(ended, 0.0)
        history = torch.cat([history, tokens[:, None]], dim=1)
        frames = torch.cat([frames, frame[:, None]], dim=1)
        ended |= tokens == eos
        if ended.all():
            break
    lengths = (history == eos).int().argmax(dim=1)  # the first EOS
    score = LengthNorm(options.length_penalty, options.length_bonus)(logprob, lengths + 1)
    return to_results(score[:, None], lengths[:, None], history[:, None], frames[:, None], step_once.guard_fired)


class JointScorer:
    """Scores every next token of every hypothesis: (1 − λ)·attention log-probability + λ·increment of
    the CTC prefix score (+ β·LM log-probability with a language model), −inf for forbidden tokens and,
    with a CTC pre-beam, for tokens outside each hypothesis' best k by attention."""

    def __init__(self, model: ASRModel, memory: Tensor, memory_lengths: Tensor, options: DecodingOptions,
                 lm: Optional[CharLM] = None):
        self.weight, self.pre_beam = options.ctc_weight, options.ctc_pre_beam
        self.ctc = None
        if self.weight > 0:
            self.ctc = CTCPrefixScorer(model.ctc_log_probs(memory).float(), memory_lengths, model.blank,
                                       model.sos_eos, beam=options.beam_size)
            self.state: CTCPrefixState = self.ctc.initial_state()
            # the last step's ψ of every token [N, V] or, with a pre-beam, of its candidates [N, K] (their ids)
            self.prefix_scores: Optional[Tensor] = None
            self.candidates: Optional[Tensor] = None
        self.lm, self.lm_weight = lm, options.lm_weight
        if lm is not None:
            self.lm_logp, self.lm_state = lm.start(len(memory_lengths) * options.beam_size, memory.device)

    def __call__(self, logp: Tensor, forbidden: Tensor) -> Tensor:
        """logp, forbidden [N, V] -> scores [N, V]."""
        scores = self.acoustic(logp, forbidden)
        return scores if self.lm is None else scores + self.lm_weight * self.lm_logp

    def acoustic(self, logp: Tensor, forbidden: Tensor) -> Tensor:
        allowed = logp.masked_fill(forbidden, float("-inf"))
        if self.ctc is None:
            return allowed
        if 0 < self.pre_beam < logp.shape[1]:  # partial scoring: only the candidates, the rest stays −inf
            self.candidates = allowed.topk(self.pre_beam, dim=1).indices
            logp, forbidden = logp.gather(1, self.candidates), forbidden.gather(1, self.candidates)
        self.prefix_scores = self.ctc.score(self.state, self.candidates)
        # a dead prefix (ψ = 0, as is one that filled up a beam from outside the pre-beam) has dead
        # extensions: −inf − (−inf) is NaN and ψ − (−inf) is +inf, make both −inf
        gain = (self.prefix_scores - self.state.prefix_score[:, None]).nan_to_num(nan=float("-inf"),
                                                                                  posinf=float("-inf"))
        scores = ((1 - self.weight) * logp + self.weight * gain).masked_fill(forbidden, float("-inf"))
        return scores if self.candidates is None else torch.full_like(allowed, float("-inf")).scatter_(
            1, self.candidates, scores)

    def chosen_prefix_scores(self, parents: Tensor, tokens: Tensor) -> Tensor:
        """ψ of the extensions parents + tokens [N]: −inf for one from outside the pre-beam."""
        psi = self.prefix_scores[parents]
        if self.candidates is None:
            return psi.gather(1, tokens[:, None])[:, 0]
        return psi.masked_fill(self.candidates[parents] != tokens[:, None], float("-inf")).max(dim=1).values

    def ctc_frames(self) -> Tensor:
        """[N] per hypothesis, the frame at which CTC's best alignment emits its last character."""
        return self.ctc.emission_frames(self.state)

    def advance(self, parents: Tensor, tokens: Tensor) -> None:
        """The survivors: hypotheses `parents` [N] extended by `tokens` [N]."""
        if self.ctc is not None:
            self.state = self.ctc.advance(self.state, parents, tokens, self.chosen_prefix_scores(parents, tokens))
        if self.lm is not None:
            self.lm_logp, self.lm_state = self.lm.step(tokens, reorder_state(self.lm_state, parents))


def beam_search(model: ASRModel, memory: Tensor, memory_lengths: Tensor, options: DecodingOptions,
                lm: Optional[CharLM] = None) -> List[DecodingResult]:
    """Beam search over all utterances × beams at once. Each step keeps, per utterance, the best
    beam_size non-EOS extensions of its beams (one top-k over beams × candidates); EOS extensions
    among the top beam_size end. An utterance is done when its beam_size-th ended hypothesis beats the
    best score any live one could still reach."""
    b, k, eos = len(memory_lengths), options.beam_size, model.sos_eos
    device = memory.device
    step_once = DecoderStep(model, memory.repeat_interleave(k, dim=0), memory_lengths.repeat_interleave(k), options)
    joint = JointScorer(model, memory, memory_lengths, options, lm)
    norm = LengthNorm(options.length_penalty, options.length_bonus)
    finished = FinishedHypotheses(b, k, step_once.max_steps, eos, device)

    # the beams of an utterance start identical: only the first is alive, so they do not repeat each other
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    scores = scores.flatten()
    history = frames = torch.zeros((b * k, 0), dtype=torch.long, device=device)
    first_row = torch.arange(b, device=device)[:, None] * k
    rank = torch.arange(2 * k, device=device)[None, :]
    anchor = torch.zeros(b * k, dtype=torch.long, device=device) if options.follows_ctc else None
    for step in range(step_once.max_steps):
        logp, forbidden, frame = step_once(history, frames, anchor)
        extended = scores[:, None] + joint(logp, forbidden)
        v = extended.shape[1]
        top_scores, top = extended.view(b, k * v).topk(2 * k, dim=1)  # at most k of them are EOS
        top_tokens, parents = top % v, top // v + first_row  # [B, 2k] tokens and rows they extend
        is_eos = top_tokens == eos

        ended = is_eos & (rank < k) & top_scores.isfinite()
        finished.add(norm(top_scores, step + 1).masked_fill(~ended, float("-inf")), history[parents], frames[parents],
                     step_once.guard_fired[parents])

        live = (is_eos.long() * 2 * k + rank).argsort(dim=1)[:, :k]  # the first k that are not EOS
        scores = top_scores.gather(1, live)
        best_live = norm.best_reachable(scores.flatten(), step + 1, step_once.max_tokens + 1).view(b, k).max(dim=1)
        done = finished.scores[:, -1] >= best_live.values
        if done.all():
            break
        scores = scores.masked_fill(done[:, None], float("-inf")).flatten()  # done utterances add nothing more
        parents = parents.gather(1, live).flatten()
        tokens = top_tokens.gather(1, live).flatten()
        history = torch.cat([history[parents], tokens[:, None]], dim=1)
        frames = torch.cat([frames[parents], frame[parents, None]], dim=1)
        step_once.reorder(parents)
        joint.advance(parents, tokens)
        if anchor is not None:
            anchor = joint.ctc_frames()
    return finished.results(options.nbest)


@torch.inference_mode()
def decode_memory(model: ASRModel, memory: Tensor, memory_lengths: Tensor,
                  options: DecodingOptions = DecodingOptions(), lm: Optional[CharLM] = None) -> List[DecodingResult]:
    """Decodes encoder output [B, T, D] with its lengths [B]; a language model `lm` is fused into beam
    search (greedy search ignores it)."""
    if (memory_lengths < 1).any():
        raise ValueError("an utterance is too short to give a single encoder frame")
    if options.beam_size == 1:
        return greedy_search(model, memory, memory_lengths, options)
    return beam_search(model, memory, memory_lengths, options, lm)


@torch.inference_mode()
def attention_map(model: ASRModel, memory: Tensor, memory_lengths: Tensor, tokens: List[int],
                  options: DecodingOptions = DecodingOptions()) -> Tensor:
    """Cross-attention [len(tokens) + 1, T] (averaged over the alignment heads) of one utterance's
    decoder fed `tokens` then EOS, under the options' attention window, placed as the search places it
    (from the frame attended last, or from CTC's alignment of the tokens so far): the alignment the
    search saw."""
    room = len(tokens) + 1  # a cache for every token, whatever the utterance's length
    step_once = DecoderStep(model, memory[:1], memory_lengths[:1],  # one pass, without restarts
                            replace(options, max_tokens=room, max_length_ratio=float(room), decoder_context=None))
    inputs = torch.tensor([model.sos_eos] + list(tokens), device=memory.device)
    ctc = (CTCPrefixScorer(model.ctc_log_probs(memory[:1]).float(), memory_lengths[:1], model.blank, model.sos_eos)
           if options.follows_ctc else None)
    state = ctc.initial_state() if ctc else None
    anchor = inputs.new_zeros(1)
    rows = []
    for step, token in enumerate(inputs):
        _, weights = model.decoder.step(token[None], step_once.cache, step_once.window.mask(anchor, memory.shape[1]))
        rows.append(step_once.attention(weights)[0])
        anchor = rows[-1].argmax()[None]
        if ctc is not None and step < len(tokens):  # the prefix the next step continues: tokens[: step + 1]
            following = inputs[step + 1: step + 2]
            state = ctc.advance(state, anchor.new_zeros(1), following, ctc.score(state, following[None])[:, 0])
            anchor = ctc.emission_frames(state)
    return torch.stack(rows)


@torch.inference_mode()
def decode(model: ASRModel, waveforms: Tensor, lengths: Tensor,
           options: DecodingOptions = DecodingOptions(), lm: Optional[CharLM] = None) -> List[DecodingResult]:
    """Transcribes waveforms [B, S] (16 kHz float) of lengths [B] samples: one result per utterance.
    The model should be in eval mode. A positive encoder_window_seconds encodes longer inputs in
    windows (none, which asks for the model file's longest training utterance, and 0: whole)."""
    memory, memory_lengths = model.encode(waveforms, lengths, window=model.encoder_frames(options.encoder_window_seconds))
    return decode_memory(model, memory, memory_lengths, options, lm)
