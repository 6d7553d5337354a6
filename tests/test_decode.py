"""Greedy and beam search on tiny random-weight models: against each other, against a slow beam search
that reruns the whole decoder every step, batched against one at a time, and the attention rules
(the loop guard also on a scripted decoder that loops)."""
import math
from dataclasses import replace

import pytest
import torch

from asr.audio import load_audio
from asr.decode import (DecoderStep, DecodingOptions, JointScorer, LoopGuard, attention_map, beam_search, decode,
                        decode_memory, greedy_search)
from asr.model import PRESETS, ASRModel, ModelConfig

VOCAB = 8
NO_RULES = DecodingOptions(beam_size=3, window_back=None, window_forward=None, eos_near_end=None)


def sharpened_model(**overrides) -> ASRModel:
    torch.manual_seed(0)
    model = ASRModel(ModelConfig(vocab_size=VOCAB, **PRESETS["tiny"], **overrides)).eval()
    with torch.no_grad():  # sharper random posteriors (fewer near-ties), EOS rarer: hypotheses of varied lengths
        model.decoder.out.weight.mul_(4.0)
        model.decoder.out.bias[model.sos_eos] -= 3.0
        model.ctc.weight.mul_(4.0)
    return model


@pytest.fixture(scope="module")
def model():
    return sharpened_model()


def waveforms(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(len(lengths), max(lengths), generator=generator) * 0.1
    lengths = torch.tensor(lengths)
    return audio.masked_fill(torch.arange(audio.shape[1]) >= lengths[:, None], 0.0), lengths


def encode(model, lengths, seed=0):
    with torch.inference_mode():
        return model.encode(*waveforms(lengths, seed))


def same_results(a, b):
    assert [r.tokens for r in a] == [r.tokens for r in b]
    assert [r.frames for r in a] == [r.frames for r in b]
    assert [r.loop_guard_fired for r in a] == [r.loop_guard_fired for r in b]
    assert [[t for t, _ in r.nbest] for r in a] == [[t for t, _ in r.nbest] for r in b]
    for x, y in zip(a, b):
        assert [s for _, s in x.nbest] == pytest.approx([s for _, s in y.nbest], rel=1e-4, abs=1e-5)


# ---- a slow, obviously-correct beam search: whole decoder pass per hypothesis per step -----------------

def logaddexp(a, b):
    if a == -math.inf or b == -math.inf:
        return max(a, b)
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def ctc_prefix_logprob(x, prefix, blank, complete=False):
    """Textbook CTC prefix (or, if complete, full-sequence) log-probability; x is a [T][V] list."""
    r_n, r_b = [-math.inf] * len(x), []
    for t in range(len(x)):
        r_b.append((r_b[-1] if t else 0.0) + x[t][blank])
    psi, last = 0.0, None
    for c in prefix:
        phi = [r_b[t] if c == last else logaddexp(r_b[t], r_n[t]) for t in range(len(x))]
        new_n, new_b = [-math.inf] * len(x), [-math.inf] * len(x)
        new_n[0] = psi = x[0][c] if last is None else -math.inf
        for t in range(1, len(x)):
            new_n[t] = logaddexp(new_n[t - 1], phi[t - 1]) + x[t][c]
            new_b[t] = logaddexp(new_n[t - 1], new_b[t - 1]) + x[t][blank]
            psi = logaddexp(psi, phi[t - 1] + x[t][c])
        r_n, r_b, last = new_n, new_b, c
    return logaddexp(r_n[-1], r_b[-1]) if complete else psi


def loop_guard_forbids(tokens, frames, frame, token, longest):
    """The loop guard by its definition: `token` goes on repeating an n-gram said twice in a row while
    attention (at `frame`) is not past the frame the token n back was read at."""
    return any(tokens[-n:] == tokens[-2 * n: -n] and token == tokens[-n] and frame <= frames[-n]
               for n in range(1, min(longest or 0, len(tokens) // 2) + 1))


def reference_beam_search(model, memory, length, options):
    k, lam, eos, blank = options.beam_size, options.ctc_weight, model.sos_eos, model.blank
    memory, lengths = memory[None, :length], torch.tensor([length])
    x = model.ctc_log_probs(memory)[0].double().tolist()
    max_tokens = max(1, min(options.max_tokens, math.floor(length * options.max_length_ratio)))

    def norm(logprob, n):
        return (logprob + options.length_bonus * n) / n ** options.length_penalty

    beams, finished = [([], 0.0, [])], []  # (tokens, log-probability, frames)
    for step in range(max_tokens + 1):
        candidates = []
        for tokens, score, frames in beams:
            logits, weights = model.decoder(torch.tensor([[eos] + tokens]), memory, lengths, need_weights=True)
            logp = logits[0, -1].log_softmax(-1).tolist()
            frame = int(torch.stack(weights)[:, 0, :, -1].mean(dim=(0, 1)).argmax())
            old = ctc_prefix_logprob(x, tokens, blank)
            for c in range(VOCAB):
                eos_blocked = step < options.min_tokens or (
                    options.eos_near_end is not None and frame < length - options.eos_near_end)
                if c == blank or (c == eos and eos_blocked and step < max_tokens) or (c != eos and step == max_tokens):
                    continue
                if c != eos and loop_guard_forbids(tokens, frames, frame, c, options.loop_guard):
                    continue
                new = ctc_prefix_logprob(x, tokens + [c] * (c != eos), blank, complete=c == eos)
                gain = (1 - lam) * logp[c] + lam * (new - old if lam else 0.0)
                candidates.append((score + gain, tokens + [c], frames + [frame]))
        top = sorted(candidates, key=lambda c: -c[0])[: 2 * k]
        finished += [(norm(s, len(t)), t[:-1], f[:-1]) for i, (s, t, f) in enumerate(top)
                     if t[-1] == eos and i < k and s > -math.inf]
        finished = sorted(finished, key=lambda f: -f[0])[:k]
        beams = [(t, s, f) for s, t, f in top if t[-1] != eos][:k]
        best_live = max((norm(s, n) for _, s, _ in beams for n in range(step + 2, max_tokens + 2)), default=-math.inf)
        if len(finished) == k and finished[-1][0] >= best_live:
            break
    return finished


def assert_search_matches_reference(model, options, sample_lengths):
    memory, memory_lengths = encode(model, sample_lengths, seed=1)
    results = decode_memory(model, memory, memory_lengths, options)
    with torch.inference_mode():
        for b, result in enumerate(results):
            expected = reference_beam_search(model, memory[b], int(memory_lengths[b]), options)
            assert [t for t, _ in result.nbest] == [t for _, t, _ in expected][: options.nbest]
            assert [s for _, s in result.nbest] == pytest.approx([s for s, _, _ in expected][: options.nbest], abs=1e-4)
            assert result.frames == expected[0][2]


@pytest.mark.parametrize("ctc_weight, length_penalty, length_bonus, eos_near_end, loop_guard",
                         [(0.0, 0.0, 0.0, None, None), (0.3, 1.0, 0.0, None, None), (0.5, 0.5, 0.2, 6, None),
                          (0.3, 1.0, 0.0, None, 5)])
def test_cached_beam_search_equals_full_recomputation(model, ctc_weight, length_penalty, length_bonus, eos_near_end,
                                                      loop_guard):
    options = replace(NO_RULES, ctc_weight=ctc_weight, length_penalty=length_penalty, length_bonus=length_bonus,
                      eos_near_end=eos_near_end, nbest=3, loop_guard=loop_guard)
    assert_search_matches_reference(model, options, [12000, 9000, 16000])


def test_cached_beam_search_equals_full_recomputation_with_location_aware_attention():
    """The cache carries each hypothesis' previous attention through beam reordering."""
    model = sharpened_model(location_kernel=5)
    with torch.no_grad():
        for block in model.decoder.blocks:  # peaked content attention, which the convolution moves
            block.cross_attn.query.weight.mul_(8.0)
            torch.nn.init.normal_(block.cross_attn.location.weight, std=4.0)
    assert_search_matches_reference(model, replace(NO_RULES, ctc_weight=0.3, nbest=3), [12000, 9000])


@pytest.mark.parametrize("location_kernel", [0, 5])
def test_cached_beam_search_equals_full_recomputation_with_the_lstm_decoder(location_kernel):
    """The LSTM decoder's state (cells, context, last weights) follows each hypothesis through reordering."""
    model = sharpened_model(arch="lstm", location_kernel=location_kernel)
    with torch.no_grad():
        model.decoder.query.weight.mul_(8.0)
        if location_kernel:
            torch.nn.init.normal_(model.decoder.location.weight, std=4.0)
    assert_search_matches_reference(model, replace(NO_RULES, ctc_weight=0.3, nbest=3), [12000, 9000])


# ---- search against search ----------------------------------------------------------------------------

@pytest.mark.parametrize("rules", [{}, dict(window_back=4, window_forward=12), dict(eos_near_end=5),
                                   dict(loop_guard=6)])
def test_beam_of_one_equals_greedy(model, rules):
    options = DecodingOptions(beam_size=1, ctc_weight=0.0, length_penalty=0.0, **rules)
    memory, memory_lengths = encode(model, [16000, 7000, 11000])
    with torch.inference_mode():
        greedy = greedy_search(model, memory, memory_lengths, options)
        beam = beam_search(model, memory, memory_lengths, options)
    same_results(greedy, beam)


@pytest.mark.parametrize("options", [DecodingOptions(beam_size=1), DecodingOptions(beam_size=4, nbest=4),
                                     DecodingOptions(beam_size=3, ctc_pre_beam=3, eos_near_end=4),
                                     DecodingOptions(beam_size=4, nbest=4, loop_guard=30)])
def test_batched_equals_one_at_a_time_on_real_speech(model, shared_data, options):
    names = ["3_george_7.wav", "8_jackson_21.wav", "0_lucas_33.wav", "5_nicolas_12.wav"]
    clips = [torch.from_numpy(load_audio(str(shared_data / "fsdd" / "recordings" / n))) for n in names]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    together = decode(model, batch, lengths, options)
    alone = [decode(model, c[None], torch.tensor([len(c)]), options)[0] for c in clips]
    same_results(together, alone)


def test_pre_beam_keeping_every_allowed_token_changes_nothing(model):
    """Every token but blank (always forbidden) CTC-scored as candidates: exactly the full scoring's search."""
    memory, memory_lengths = encode(model, [14000, 9000])
    options = DecodingOptions(beam_size=4, nbest=4)
    assert options.ctc_pre_beam >= VOCAB  # the default scores a small vocabulary whole
    full = decode_memory(model, memory, memory_lengths, options)
    pre_beam = decode_memory(model, memory, memory_lengths, replace(options, ctc_pre_beam=VOCAB - 1))
    same_results(full, pre_beam)
    assert [(r.nbest, r.frames) for r in full] == [(r.nbest, r.frames) for r in pre_beam]


SAID = [37, 120, 120, 250, 9]  # what the constructed CTC posteriors spell, a repeat included


def spelling_model(monkeypatch, vocab=300):
    """A 300-token model whose CTC head spells SAID (at frames 3, 7, ... with blank between) and whose
    decoder, step by step, ranks the two tokens after each one of SAID first, SAID's token third, one
    more close behind and EOS only after the last: attention alone says the wrong thing, CTC corrects it."""
    torch.manual_seed(0)
    model = ASRModel(ModelConfig(vocab_size=vocab, **PRESETS["tiny"])).eval()
    memory, memory_lengths = encode(model, [16000])
    probs = torch.full((1, memory.shape[1], vocab), 0.03 / (vocab - 1))
    probs[0, :, model.blank] = 0.97
    for i, token in enumerate(SAID):
        probs[0, 3 + 4 * i, [token, model.blank]] = torch.tensor([0.97, 0.03 / (vocab - 1)])
    monkeypatch.setattr(model, "ctc_log_probs", lambda memory: probs.log())

    def step(tokens, cache, cross_mask=None, need_weights=True):
        logits = torch.full((len(tokens), vocab), -8.0)
        if cache.length < len(SAID):
            said = SAID[cache.length]
            logits[:, [said + 1, said + 2, said, said + 3]] = torch.tensor([2.0, 1.5, 1.0, 0.6])
        else:
            logits[:, model.sos_eos] = 3.0
        weights = torch.full((len(tokens), *model.alignment_heads.shape, memory.shape[1]), 1.0 / memory.shape[1])
        cache.length += 1
        return logits, weights

    monkeypatch.setattr(model.decoder, "step", step)
    return model, memory, memory_lengths


def test_pre_beam_smaller_than_the_vocabulary_keeps_the_best(monkeypatch):
    model, memory, memory_lengths = spelling_model(monkeypatch)
    options = DecodingOptions(beam_size=3, ctc_weight=0.5, ctc_pre_beam=0)
    [full] = decode_memory(model, memory, memory_lengths, options)
    assert full.tokens == SAID
    [partial] = decode_memory(model, memory, memory_lengths, replace(options, ctc_pre_beam=3))
    assert partial.tokens == SAID and partial.score == full.score == pytest.approx(-0.818, abs=1e-3)
    [narrow] = decode_memory(model, memory, memory_lengths, replace(options, ctc_pre_beam=2))
    assert narrow.tokens == [t + 1 for t in SAID]  # CTC never sees what attention ranks third: the test can fail


def test_beams_filled_from_outside_the_pre_beam_stay_dead(monkeypatch):
    """With fewer candidates than beams, the search fills beams with −inf extensions from outside the
    pre-beam, whose ψ was never computed: every extension of those must stay −inf (not NaN or +inf)."""
    model, memory, memory_lengths = spelling_model(monkeypatch)
    joint = JointScorer(model, memory, memory_lengths, DecodingOptions(beam_size=3, ctc_weight=0.5, ctc_pre_beam=1))
    logp = torch.randn(3, 300, generator=torch.Generator().manual_seed(0)).log_softmax(dim=1)
    forbidden = torch.zeros_like(logp, dtype=torch.bool)
    best = int(joint(logp, forbidden)[0].argmax())
    joint.advance(torch.zeros(3, dtype=torch.long), torch.tensor([best, best + 1, best + 2]))
    scores = joint(logp, forbidden)
    assert scores[0].isfinite().sum() == 1 and (scores[1:] == float("-inf")).all()


def test_deterministic_and_nbest_sorted(model):
    options = DecodingOptions(beam_size=5, nbest=5)
    first = decode(model, *waveforms([16000, 10000], seed=3), options)
    second = decode(model, *waveforms([16000, 10000], seed=3), options)
    assert [(r.tokens, r.score, r.frames, r.nbest) for r in first] == \
        [(r.tokens, r.score, r.frames, r.nbest) for r in second]
    for r in first:
        scores = [s for _, s in r.nbest]
        assert 1 < len(scores) <= 5 and scores == sorted(scores, reverse=True)
        assert (r.tokens, r.score) == r.nbest[0]
        assert all(t not in (model.blank, model.sos_eos) for t in r.tokens)


# ---- attention rules and limits -------------------------------------------------------------------------

def window_violations(frames, back, forward):
    previous = [0] + frames[:-1]
    return sum(not p - back <= f <= p + forward for p, f in zip(previous, frames))


@pytest.mark.parametrize("beam_size", [1, 4])
def test_window_bounds_each_step(model, beam_size):
    back, forward = 1, 2
    audio = waveforms([16000, 12000, 16000], seed=4)
    options = DecodingOptions(beam_size=beam_size, min_tokens=10)
    free = decode(model, *audio, replace(options, window_back=None, window_forward=None))
    assert sum(window_violations(r.frames, back, forward) for r in free) > 0  # the test can fail
    for r in decode(model, *audio, replace(options, window_back=back, window_forward=forward)):
        assert len(r.frames) == len(r.tokens) >= 10
        assert window_violations(r.frames, back, forward) == 0


def test_ctc_window_wide_enough_for_every_frame_is_no_window(model):
    memory, memory_lengths = encode(model, [16000, 9000, 12000])
    options = DecodingOptions(beam_size=4, nbest=2, ctc_weight=0.5, min_tokens=6)
    free = decode_memory(model, memory, memory_lengths, options)
    wide = decode_memory(model, memory, memory_lengths, replace(options, window_from="ctc", window_back=100,
                                                                   window_forward=100))
    same_results(free, wide)
    narrow = decode_memory(model, memory, memory_lengths, replace(options, window_from="ctc", window_back=1,
                                                                     window_forward=2))
    assert [r.frames for r in narrow] != [r.frames for r in free]  # the test can fail


def test_ctc_window_follows_the_ctc_alignment_not_the_attention(model, monkeypatch):
    """Each step's window is centred where CTC's alignment of that hypothesis has got to: recorded
    from the scorer, every attended frame lies within [ctc frame - back, ctc frame + forward]."""
    from asr import decode as decode_module
    memory, memory_lengths = encode(model, [16000])
    back, forward = 1, 2
    anchors, calls = [], []
    original = decode_module.JointScorer.ctc_frames

    def recording(self):
        anchors.append(original(self))
        return anchors[-1]

    monkeypatch.setattr(decode_module.JointScorer, "ctc_frames", recording)
    step_call = decode_module.DecoderStep.__call__

    def spying(self, history, frames, anchor=None):
        out = step_call(self, history, frames, anchor)
        calls.append((anchor.clone(), out[2].clone()))
        return out

    monkeypatch.setattr(decode_module.DecoderStep, "__call__", spying)
    options = DecodingOptions(beam_size=3, ctc_weight=0.5, min_tokens=6, window_from="ctc", window_back=back,
                              window_forward=forward)
    decode_memory(model, memory, memory_lengths, options)
    assert len(anchors) == len(calls) - 1 >= 6
    assert torch.equal(calls[0][0], torch.zeros(3, dtype=torch.long))
    for recorded, (anchor, attended) in zip(anchors, calls[1:]):
        assert torch.equal(recorded, anchor)
        assert ((attended >= anchor - back) & (attended <= anchor + forward)).all()


@pytest.mark.parametrize("search", [dict(beam_size=1), dict(beam_size=3, ctc_weight=0.0)])
def test_a_ctc_window_without_ctc_scores_is_no_window(model, search):
    """A model file may recommend the CTC-triggered window; greedy search and attention-only beams,
    which have no CTC alignment to place it, then decode exactly as with no window."""
    memory, memory_lengths = encode(model, [16000, 9000])
    none = decode_memory(model, memory, memory_lengths, DecodingOptions(**search))
    ctc_window = decode_memory(model, memory, memory_lengths,
                               DecodingOptions(**search, window_from="ctc", window_back=0, window_forward=1))
    narrow = decode_memory(model, memory, memory_lengths,
                           DecodingOptions(**search, window_from="attention", window_back=0, window_forward=1))
    assert [(r.tokens, r.frames, r.score) for r in ctc_window] == [(r.tokens, r.frames, r.score) for r in none]
    assert [r.frames for r in narrow] != [r.frames for r in none]  # that window would have changed it


def test_eos_near_end_blocks_early_eos(model):
    eager = ASRModel(model.cfg).eval()
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        eager.decoder.out.bias[eager.sos_eos] += 20.0  # EOS first, whatever the audio
    memory, memory_lengths = encode(eager, [16000, 12000])
    margin, unforced = 2, 0
    for beam_size in (1, 3):
        options = replace(NO_RULES, beam_size=beam_size, ctc_weight=0.0)
        assert all(r.tokens == [] for r in decode_memory(eager, memory, memory_lengths, options))
        results = decode_memory(eager, memory, memory_lengths, replace(options, eos_near_end=margin))
        for b, r in enumerate(results):
            assert len(r.tokens) > 0
            if len(r.tokens) == memory_lengths[b]:
                continue  # EOS forced at the maximum length
            unforced += 1
            with torch.inference_mode():  # where the decoder looked when it chose EOS
                _, weights = eager.decoder(torch.tensor([[eager.sos_eos] + r.tokens]), memory[b: b + 1],
                                           memory_lengths[b: b + 1], need_weights=True)
            assert torch.stack(weights)[:, 0, :, -1].mean(dim=(0, 1)).argmax() >= memory_lengths[b] - margin
    assert unforced > 0


def test_length_limits(model):
    memory, memory_lengths = encode(model, [16000, 8000])
    for beam_size in (1, 3):
        options = DecodingOptions(beam_size=beam_size, max_length_ratio=0.25, min_tokens=2)
        for r, n in zip(decode_memory(model, memory, memory_lengths, options), memory_lengths.tolist()):
            assert 2 <= len(r.tokens) <= n // 4
        capped = decode_memory(model, memory, memory_lengths, replace(options, max_tokens=3, min_tokens=3))
        assert [len(r.tokens) for r in capped] == [3, 3]


def test_pure_ctc_weight_has_no_nan(model):
    for r in decode(model, *waveforms([16000, 9000]), DecodingOptions(beam_size=4, ctc_weight=1.0)):
        assert math.isfinite(r.score)


def test_attention_map_replays_the_search(model):
    """The map `asr evaluate` plots is the attention the search saw: its argmax per token is the frame
    the search recorded, and under a window it never leaves the window."""
    options = DecodingOptions(beam_size=1, min_tokens=8, window_back=1, window_forward=2)
    memory, memory_lengths = encode(model, [16000], seed=4)
    [result] = decode_memory(model, memory, memory_lengths, options)
    weights = attention_map(model, memory, memory_lengths, result.tokens, options)
    assert weights.shape == (len(result.tokens) + 1, memory.shape[1])
    assert torch.allclose(weights.sum(dim=1), torch.ones(len(weights)), atol=1e-5)
    assert weights.argmax(dim=1)[:-1].tolist() == result.frames
    assert window_violations(weights.argmax(dim=1).tolist(), 1, 2) == 0


# ---- alignment heads -------------------------------------------------------------------------------------

def test_with_every_head_chosen_decoding_is_what_the_mean_over_all_heads_gave(model, monkeypatch):
    """The default choice (every head) reproduces decoding from the plain mean over layers and heads,
    as it was before heads could be chosen, bit for bit: tokens, scores and frames."""
    assert model.alignment_heads.shape == (model.cfg.decoder_layers, model.cfg.n_heads) and model.alignment_heads.all()
    memory, memory_lengths = encode(model, [16000, 12000, 9000], seed=5)
    rules = dict(window_back=2, window_forward=6, eos_near_end=4)
    options = [DecodingOptions(beam_size=1, **rules), DecodingOptions(beam_size=4, nbest=4, **rules)]
    chosen = [decode_memory(model, memory, memory_lengths, o) for o in options]
    monkeypatch.setattr(DecoderStep, "attention", lambda self, weights: weights.mean(dim=(1, 2)))
    for results, o in zip(chosen, options):
        before = decode_memory(model, memory, memory_lengths, o)
        assert [(r.tokens, r.score, r.frames, r.nbest) for r in results] == \
            [(r.tokens, r.score, r.frames, r.nbest) for r in before]


def two_layer_model(heads):
    """A tiny random model with two decoder layers, decoding from `heads` [[layer, head], ...] only."""
    torch.manual_seed(1)
    model = ASRModel(ModelConfig(vocab_size=VOCAB, **{**PRESETS["tiny"], "decoder_layers": 2})).eval()
    with torch.no_grad():
        model.decoder.out.weight.mul_(4.0)
        model.decoder.out.bias[model.sos_eos] -= 3.0
        model.alignment_heads.zero_()
        for layer, head in heads:
            model.alignment_heads[layer, head] = True
    return model


def test_frames_come_from_the_chosen_heads_only():
    heads = [[0, 1], [1, 0]]
    model = two_layer_model(heads)
    memory, memory_lengths = encode(model, [16000, 12000], seed=2)
    options = DecodingOptions(beam_size=1, ctc_weight=0.0, min_tokens=6)
    results = decode_memory(model, memory, memory_lengths, options)
    every_head = []
    with torch.inference_mode():
        for b, r in enumerate(results):  # the teacher-forced attention of the decoded tokens, by hand
            _, weights = model.decoder(torch.tensor([[model.sos_eos] + r.tokens]), memory[b: b + 1],
                                       memory_lengths[b: b + 1], need_weights=True)
            weights = torch.stack(weights)[:, 0, :, :-1]  # [layers, heads, tokens, T] (EOS's row left out)
            assert r.frames == torch.stack([weights[layer, head] for layer, head in heads]).mean(0).argmax(-1).tolist()
            every_head.append(weights.mean(dim=(0, 1)).argmax(-1).tolist())
    assert every_head != [r.frames for r in results]  # the test can fail


def test_attention_map_replays_a_ctc_triggered_search(model):
    """With window_from ctc, the map's window is placed from CTC's alignment as the search placed it: the
    best hypothesis' recorded frames are the map's argmax."""
    options = DecodingOptions(beam_size=3, ctc_weight=0.5, min_tokens=8, window_from="ctc", window_back=1,
                              window_forward=2)
    memory, memory_lengths = encode(model, [16000], seed=4)
    [result] = decode_memory(model, memory, memory_lengths, options)
    weights = attention_map(model, memory, memory_lengths, result.tokens, options)
    assert weights.argmax(dim=1)[:-1].tolist() == result.frames
    free = attention_map(model, memory, memory_lengths, result.tokens, replace(options, window_from="attention"))
    assert not torch.equal(free, weights)  # the test can fail: the two windows differ here


def test_window_and_attention_map_follow_the_chosen_heads():
    model = two_layer_model([[1, 1]])
    options = DecodingOptions(beam_size=1, min_tokens=8, window_back=1, window_forward=2)
    memory, memory_lengths = encode(model, [16000], seed=4)
    [result] = decode_memory(model, memory, memory_lengths, options)
    weights = attention_map(model, memory, memory_lengths, result.tokens, options)
    assert weights.argmax(dim=1)[:-1].tolist() == result.frames
    assert window_violations(weights.argmax(dim=1).tolist(), 1, 2) == 0


# ---- loop guard ------------------------------------------------------------------------------------------

def test_loop_guard_off_changes_nothing(model):
    """Off by default, and a guard that checks no period (0) decodes exactly as no guard."""
    assert DecodingOptions().loop_guard is None
    memory, memory_lengths = encode(model, [16000, 12000, 9000], seed=6)
    for options in (DecodingOptions(beam_size=1), DecodingOptions(beam_size=4, nbest=4, eos_near_end=4)):
        off = decode_memory(model, memory, memory_lengths, options)
        assert [(r.tokens, r.score, r.frames, r.nbest) for r in off] == \
            [(r.tokens, r.score, r.frames, r.nbest) for r in decode_memory(model, memory, memory_lengths,
                                                                           replace(options, loop_guard=0))]
        assert all(r.loop_guard_fired == 0 for r in off)


def test_loop_guard_forbids_what_its_definition_says():
    """The vectorised guard against loop_guard_forbids, on random histories over three tokens (many repeats)."""
    generator = torch.Generator().manual_seed(0)
    guard = LoopGuard(6, VOCAB, eos=2, device=torch.device("cpu"))
    forbids = 0
    for length in range(16):
        history = torch.randint(3, 6, (50, length), generator=generator)
        frames = torch.randint(0, 4, (50, length), generator=generator)
        frame = torch.randint(0, 4, (50,), generator=generator)
        forbidden = guard.forbidden(history, frames, frame)
        expected = [[loop_guard_forbids(h, f, now, c, 6) for c in range(VOCAB)]
                    for h, f, now in zip(history.tolist(), frames.tolist(), frame.tolist())]
        assert (forbidden.tolist() if length >= 2 else [[False] * VOCAB] * 50) == expected
        forbids += sum(map(sum, expected))
    assert forbids > 0  # the test can fail


@pytest.mark.parametrize("beam_size", [1, 4])
def test_loop_guard_batched_equals_one_at_a_time(model, beam_size):
    options = DecodingOptions(beam_size=beam_size, nbest=beam_size, loop_guard=30)
    audio, lengths = waveforms([16000, 9000, 12000, 5000], seed=0)
    together = decode(model, audio, lengths, options)
    alone = [decode(model, audio[i: i + 1, :n], lengths[i: i + 1], options)[0] for i, n in enumerate(lengths.tolist())]
    same_results(together, alone)
    assert sum(r.loop_guard_fired for r in together) > 0  # the test can fail


A, B = 4, 5  # two characters (neither blank nor EOS) the scripted decoder says in turn


def scripted_decoder(model, monkeypatch, num_frames, frame_at):
    """The decoder replaced by one that says A B A B ... forever (EOS its second choice, far behind)
    with its cross-attention on frame frame_at(step)."""
    assert {A, B}.isdisjoint({model.blank, model.sos_eos})

    def step(tokens, cache, cross_mask=None, need_weights=True):
        logits = torch.full((len(tokens), VOCAB), -20.0)
        logits[:, model.sos_eos] = 0.0
        logits[torch.arange(len(tokens)), torch.where(tokens == A, B, A)] = 5.0
        weights = torch.zeros(len(tokens), *model.alignment_heads.shape, num_frames)
        weights[..., min(frame_at(cache.length), num_frames - 1)] = 1.0
        cache.length += 1
        return logits, weights

    monkeypatch.setattr(model.decoder, "step", step)


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("frame_at", [lambda step: 3, lambda step: step % 2], ids=["stays", "goes back"])
def test_loop_guard_stops_a_decoder_that_rereads_the_audio(model, monkeypatch, beam_size, frame_at):
    memory, memory_lengths = encode(model, [16000])
    scripted_decoder(model, monkeypatch, memory.shape[1], frame_at)
    options = DecodingOptions(beam_size=beam_size, ctc_weight=0.0)
    [looping] = decode_memory(model, memory, memory_lengths, options)
    assert looping.tokens == ([A, B] * len(memory[0]))[: int(memory_lengths[0])] and looping.loop_guard_fired == 0
    [guarded] = decode_memory(model, memory, memory_lengths, replace(options, loop_guard=4))
    assert guarded.tokens == [A, B, A, B] and guarded.loop_guard_fired == 1  # a third A forbidden: EOS


@pytest.mark.parametrize("beam_size", [1, 3])
def test_loop_guard_lets_a_repetition_that_moves_through_the_audio_go_on(model, monkeypatch, beam_size):
    memory, memory_lengths = encode(model, [16000])
    scripted_decoder(model, monkeypatch, memory.shape[1], lambda step: step)
    options = DecodingOptions(beam_size=beam_size, ctc_weight=0.0)
    [free] = decode_memory(model, memory, memory_lengths, options)
    [guarded] = decode_memory(model, memory, memory_lengths, replace(options, loop_guard=4))
    assert guarded.tokens == free.tokens == ([A, B] * len(memory[0]))[: int(memory_lengths[0])]
    assert (guarded.score, guarded.frames, guarded.loop_guard_fired) == (free.score, free.frames, 0)


def test_a_decoder_context_longer_than_every_output_changes_nothing(model):
    memory, memory_lengths = encode(model, [16000, 9000, 12000])
    for options in (DecodingOptions(beam_size=1, min_tokens=10), DecodingOptions(beam_size=4, nbest=2, min_tokens=10)):
        free = decode_memory(model, memory, memory_lengths, options)
        longest = max(len(t) for r in free for t, _ in r.nbest)
        same_results(free, decode_memory(model, memory, memory_lengths, replace(options, decoder_context=longest + 2)))
        short = decode_memory(model, memory, memory_lengths, replace(options, decoder_context=6))
        assert [r.tokens for r in short] != [r.tokens for r in free]  # the test can fail


@pytest.mark.parametrize("window_from", ["attention", "ctc"])
def test_a_decoder_past_its_context_continues_as_one_started_on_the_last_half(model, window_from):
    """With decoder_context 8, the step after 8 positions scores exactly what a fresh decoder fed BOS and
    the last 4 tokens scores, each token read under the window (anchor) it was read under before."""
    memory, memory_lengths = encode(model, [16000, 12000])
    options = DecodingOptions(beam_size=1, window_back=2, window_forward=3, window_from=window_from)
    history = torch.randint(0, VOCAB - 2, (2, 11), generator=torch.Generator().manual_seed(1))
    anchors = torch.randint(0, 20, (2, 12), generator=torch.Generator().manual_seed(2))

    @torch.inference_mode()
    def run(context, tokens, steps_anchors):
        step_once = DecoderStep(model, memory, memory_lengths, replace(options, decoder_context=context))
        return [step_once(tokens[:, :s], tokens[:, :s], steps_anchors[:, s])[0] for s in range(tokens.shape[1] + 1)]

    limited = run(8, history, anchors)
    free = run(None, history, anchors)
    assert all(torch.equal(a, b) for a, b in zip(limited[:8], free[:8]))
    fresh = run(None, history[:, 4:], anchors[:, 4:])  # BOS read where token 4 was, then tokens 4-10
    for s in (8, 9, 10, 11):  # restarted at 8 (BOS + tokens 4-6, then 7); 8 positions again at 12
        assert torch.allclose(limited[s], fresh[s - 4], atol=1e-5)
    assert not torch.allclose(limited[8], free[8], atol=1e-3)  # the test can fail


def test_attention_map_of_a_transcript_longer_than_the_decoder_context(model):
    memory, memory_lengths = encode(model, [16000])
    tokens = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]
    options = DecodingOptions(window_from="ctc", window_back=2, window_forward=3, ctc_weight=0.5)
    limited = attention_map(model, memory, memory_lengths, tokens, replace(options, decoder_context=4))
    assert torch.equal(limited, attention_map(model, memory, memory_lengths, tokens, options))
