import pytest
import torch

from asr.audio import load_audio
from asr.features import SpecAugmentConfig
from asr.layers import ConvSubsampler
from asr.model import IGNORE_ID, PRESETS, ASRModel, ModelConfig

V = 12


def tiny_model(seed: int = 0, **overrides) -> ASRModel:
    torch.manual_seed(seed)
    return ASRModel(ModelConfig(vocab_size=V, **{**PRESETS["tiny"], **overrides})).eval()


def fsdd_batch(shared_data, names):
    waves = [torch.from_numpy(load_audio(str(shared_data / "fsdd" / "recordings" / n))) for n in names]
    lengths = torch.tensor([len(w) for w in waves])
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths


@pytest.mark.parametrize("factor", [4, 6, 8])
def test_subsampler_lengths_match_its_output(factor):
    sub = ConvSubsampler(n_mels=80, d_model=32, channels=4, factor=factor)
    for frames in [1, 2, 57, 100]:
        out, lengths = sub(torch.randn(1, frames, 80), torch.tensor([frames]))
        assert out.shape[1] == lengths.item() == sub.output_lengths(torch.tensor([frames])).item()
        assert lengths.item() == -(-frames // factor)  # ceil(frames / factor)


def adam_steps(model, waves, lengths, tokens, steps: int, record: str):
    """`steps` Adam updates (lr 3e-3) on one batch: the `record` output of each step, and the last outputs."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    values = []
    for _ in range(steps):
        out = model(waves, lengths, tokens)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        values.append(out[record].item())
    return values, out


@pytest.mark.parametrize("options", [dict(conv_kernel=0), dict(conv_kernel=15), dict(arch="lstm")])
def test_padded_batch_equals_items_one_by_one(shared_data, options):
    model = tiny_model(**options)
    names = ["3_george_0.wav", "7_lucas_1.wav", "0_jackson_2.wav"]
    waves, lengths = fsdd_batch(shared_data, names)
    tokens = torch.tensor([[3, 4, 5, 6], [7, 8, IGNORE_ID, IGNORE_ID], [9, 10, 11, IGNORE_ID]])
    with torch.no_grad():
        memory, memory_lengths = model.encode(waves, lengths)
        inputs, _ = model.decoder_io(tokens)
        logits, _ = model.decoder(inputs, memory, memory_lengths)
        for i in range(len(names)):
            one_memory, one_len = model.encode(waves[i: i + 1, : lengths[i]], lengths[i: i + 1])
            assert one_len.item() == memory_lengths[i].item()
            n = one_len.item()
            torch.testing.assert_close(one_memory[0], memory[i, :n], atol=1e-4, rtol=1e-4)
            k = (tokens[i] != IGNORE_ID).sum().item() + 1
            one_logits, _ = model.decoder(inputs[i: i + 1, :k], one_memory, one_len)
            torch.testing.assert_close(one_logits[0], logits[i, :k], atol=1e-4, rtol=1e-4)


def test_conformer_conv_module_is_optional_and_checked():
    assert tiny_model().encoder.blocks[0].conv is None
    with_conv = tiny_model(conv_kernel=7)
    assert with_conv.encoder.blocks[0].conv.depthwise.kernel_size == (7,)
    extra = sum(p.numel() for p in with_conv.parameters()) - sum(p.numel() for p in tiny_model().parameters())
    d = PRESETS["tiny"]["d_model"]
    # per block: LayerNorm, d->2d pointwise, depthwise (d x 7 + d), LayerNorm, d->d pointwise
    assert extra == PRESETS["tiny"]["encoder_layers"] * (2 * d + (2 * d * d + 2 * d) + 8 * d + 2 * d + d * d + d)
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="conv_kernel"):
            ModelConfig(vocab_size=V, conv_kernel=bad)


def test_bf16_autocast_on_cpu_trains_close_to_float32(shared_data):
    """CPU bf16 (asr.runtime.autocast): the loss stays within bf16 rounding of float32's and still falls."""
    from asr.runtime import autocast
    waves, lengths = fsdd_batch(shared_data, ["3_george_0.wav", "7_lucas_1.wav"])
    tokens = torch.tensor([[3, 4, 5], [6, 7, IGNORE_ID]])
    model = tiny_model().train()
    torch.manual_seed(1)
    reference = model(waves, lengths, tokens)["loss"]
    with autocast("bf16", torch.device("cpu")):
        torch.manual_seed(1)
        mixed = model(waves, lengths, tokens)["loss"]
    assert mixed.dtype == torch.float32
    assert abs(mixed.item() - reference.item()) < 0.02 * reference.item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        with autocast("bf16", torch.device("cpu")):
            loss = model(waves, lengths, tokens)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with autocast("fp16", torch.device("cpu")):  # fp16 is for CUDA only: no-op here
        assert model.ctc(torch.randn(1, PRESETS["tiny"]["d_model"])).dtype == torch.float32


def test_changing_a_future_token_leaves_earlier_outputs_unchanged():
    model = tiny_model()
    memory, lengths = torch.randn(1, 20, 64), torch.tensor([20])
    tokens = torch.tensor([[2, 5, 6, 7, 8]])
    changed = tokens.clone()
    changed[0, 3] = 9
    with torch.no_grad():
        a, _ = model.decoder(tokens, memory, lengths)
        b, _ = model.decoder(changed, memory, lengths)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


ARCH_AND_KERNEL = [("transformer", 0), ("transformer", 5), ("lstm", 0), ("lstm", 5)]


def located_model(arch: str, location_kernel: int) -> ASRModel:
    """tiny_model, with location-aware cross-attention whose convolution is not zero (as after training)."""
    model = tiny_model(arch=arch, location_kernel=location_kernel)
    if location_kernel:
        convs = [model.decoder.location] if arch == "lstm" else [b.cross_attn.location for b in model.decoder.blocks]
        for conv in convs:
            torch.nn.init.normal_(conv.weight, std=2.0)
    return model


@pytest.mark.parametrize("arch, location_kernel", ARCH_AND_KERNEL)
def test_incremental_steps_with_cache_equal_the_full_forward(arch, location_kernel):
    model = located_model(arch, location_kernel)
    memory, lengths = torch.randn(2, 15, 64), torch.tensor([15, 9])
    tokens = torch.tensor([[2, 5, 6, 7, 8, 3], [2, 9, 9, 4, 10, 11]])
    with torch.no_grad():
        full, full_weights = model.decoder(tokens, memory, lengths, need_weights=True)
        cache = model.decoder.init_cache(memory, lengths, max_len=10)
        for t in range(tokens.shape[1]):
            logits, weights = model.decoder.step(tokens[:, t], cache)
            torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(weights[:, -1], full_weights[-1][:, :, t], atol=1e-5, rtol=1e-5)
    assert weights[1, :, :, 9:].abs().max() == 0  # padding frames get no attention


@pytest.mark.parametrize("arch, location_kernel", ARCH_AND_KERNEL)
def test_cache_reorder_follows_the_chosen_rows(arch, location_kernel):
    model = located_model(arch, location_kernel)
    memory, lengths = torch.randn(3, 10, 64), torch.tensor([10, 10, 10])
    with torch.no_grad():
        cache = model.decoder.init_cache(memory, lengths, max_len=4)
        model.decoder.step(torch.tensor([2, 2, 2]), cache)
        reordered = cache.reorder(torch.tensor([2, 2, 0]))
        a, _ = model.decoder.step(torch.tensor([5, 6, 7]), reordered)
        fresh = model.decoder.init_cache(memory[[2, 2, 0]], lengths, max_len=4)
        model.decoder.step(torch.tensor([2, 2, 2]), fresh)
        b, _ = model.decoder.step(torch.tensor([5, 6, 7]), fresh)
    torch.testing.assert_close(a, b)


def test_location_aware_attention_starts_as_plain_attention_and_is_checked():
    plain, located = tiny_model(), tiny_model(location_kernel=7)
    assert not any(isinstance(m, torch.nn.Conv1d) for m in plain.decoder.modules())
    missing, unexpected = located.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(name.endswith("cross_attn.location.weight") for name in missing) and missing
    memory, lengths = torch.randn(2, 15, 64), torch.tensor([15, 9])
    tokens = torch.tensor([[2, 5, 6, 7], [2, 9, 9, 4]])
    with torch.no_grad():
        a, wa = plain.decoder(tokens, memory, lengths, need_weights=True)
        b, wb = located.decoder(tokens, memory, lengths, need_weights=True)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)  # a zero convolution adds nothing
    torch.testing.assert_close(wa[-1], wb[-1], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="location_kernel"):
        ModelConfig(vocab_size=V, location_kernel=4)


def test_location_term_pulls_attention_to_just_after_the_previous_query():
    """With a kernel that adds a large logit one frame after wherever the previous query looked, and
    memory that gives every frame the same content score, each query attends one frame further on."""
    model = tiny_model(location_kernel=3)
    for block in model.decoder.blocks:
        attention = block.cross_attn
        torch.nn.init.zeros_(attention.location.weight)
        attention.location.weight.data[:, 0, 0] = 50.0  # output frame t reads input frame t - 1
    memory = torch.zeros(1, 12, 64)
    memory[0, 0] = 1.0  # distinct first frame: the first query (no predecessor) may look anywhere
    with torch.no_grad():
        block = model.decoder.blocks[0]
        k, v = block.cross_attn.project_key_value(memory)
        mask = torch.ones(1, 1, 1, 12, dtype=torch.bool)
        queries = torch.randn(1, 5, 64)
        _, probs, content = block.cross_attn.attend_located(queries, k, v, mask)
    before = content[0, :, :-1].argmax(-1)  # [H, 4]: where each query's predecessor looked
    assert torch.equal(probs[0, :, 1:].argmax(-1), (before + 1).clamp(max=11))


def test_teacher_forcing_inputs_and_targets():
    model = tiny_model()
    inputs, targets = model.decoder_io(torch.tensor([[5, 6, 7], [8, IGNORE_ID, IGNORE_ID]]))
    assert inputs.tolist() == [[2, 5, 6, 7], [2, 8, 2, 2]]
    assert targets.tolist() == [[5, 6, 7, 2], [8, 2, IGNORE_ID, IGNORE_ID]]


@pytest.mark.parametrize("options", [dict(arch="transformer"), dict(arch="lstm"),
                                     dict(intermediate_ctc_weight=0.3, self_conditioning=True)])
def test_loss_decreases_when_overfitting_real_speech(shared_data, options):
    model = tiny_model(dropout=0.0, **options).train()
    model.specaugment.config.freq_masks = model.specaugment.config.time_masks = 0
    waves, lengths = fsdd_batch(shared_data, ["1_george_5.wav", "2_jackson_6.wav", "8_nicolas_7.wav"])
    tokens = torch.tensor([[5, 6, 7], [8, 9, IGNORE_ID], [10, 11, 4]])
    losses, out = adam_steps(model, waves, lengths, tokens, steps=60, record="loss")
    assert losses[-1] < 0.25 * losses[0]
    assert out["correct"].item() == out["tokens"].item()  # every target token right


def test_config_round_trip_and_unknown_option():
    cfg = ModelConfig(vocab_size=V, **PRESETS["small"])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model options: colour"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": 1})


def test_presets_grow_in_the_order_they_are_listed():
    sizes = {name: sum(p.numel() for p in ASRModel(ModelConfig(vocab_size=30, **preset)).parameters())
             for name, preset in PRESETS.items()}
    assert list(sizes) == ["tiny", "small", "medium", "espnet6x3", "base"]
    assert list(sizes.values()) == sorted(sizes.values())
    assert 2.0 < sizes["medium"] / sizes["small"] < 2.5  # between small and espnet6x3, about twice small


GUIDED_NAMES = ["1_george_5.wav", "2_jackson_6.wav", "8_nicolas_7.wav"]
GUIDED_TOKENS = torch.tensor([[5, 6, 7], [8, 9, IGNORE_ID], [10, 11, 4]])


def deterministic_training_model(**overrides) -> ASRModel:
    """Training mode with no dropout and no SpecAugment: the same batch gives the same loss."""
    no_masks = SpecAugmentConfig(freq_masks=0, time_masks=0)
    return tiny_model(dropout=0.0, specaugment=no_masks, **overrides).train()


def test_guided_attention_off_leaves_loss_and_gradients_bit_identical(shared_data):
    waves, lengths = fsdd_batch(shared_data, GUIDED_NAMES)
    off = dict(guided_attention_weight=0.0, guided_attention_sigma=5.0, guided_attention_path="diagonal",
               guided_attention_decay_steps=10)
    outs, grads = [], []
    for options in ({}, off):
        model = tiny_model(**options).train()  # with dropout and SpecAugment: the same random draws
        torch.manual_seed(1)
        out = model(waves, lengths, GUIDED_TOKENS, generator=torch.Generator().manual_seed(0), step=7)
        out["loss"].backward()
        outs.append(out)
        grads.append([p.grad for p in model.parameters()])
    assert "guided_loss" not in outs[1]
    assert torch.equal(outs[0]["loss"], outs[1]["loss"])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_guided_attention_adds_its_decaying_weighted_penalty_in_training_only(shared_data):
    waves, lengths = fsdd_batch(shared_data, GUIDED_NAMES)
    base = deterministic_training_model()
    guided = deterministic_training_model(guided_attention_weight=2.0, guided_attention_decay_steps=100)
    plain = base(waves, lengths, GUIDED_TOKENS)
    at_start = guided(waves, lengths, GUIDED_TOKENS, step=0)
    halved = guided(waves, lengths, GUIDED_TOKENS, step=100)
    penalty = at_start["guided_loss"]
    assert 0 < penalty.item() < 1 and not penalty.requires_grad
    torch.testing.assert_close(at_start["loss"], plain["loss"] + 2.0 * penalty)
    torch.testing.assert_close(halved["loss"], plain["loss"] + 1.0 * penalty)
    with torch.no_grad():
        evaluated = guided.eval()(waves, lengths, GUIDED_TOKENS)
        assert torch.equal(evaluated["loss"], base.eval()(waves, lengths, GUIDED_TOKENS)["loss"])
    assert "guided_loss" not in evaluated


def middle_block_ctc_loss(model, waves, lengths, tokens):
    """The CTC loss of the middle encoder block's output, read by a hook (tiny has 2 blocks: the first)."""
    seen = []
    handle = model.encoder.blocks[0].register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        _, memory_lengths = model.encode(waves, lengths)
    finally:
        handle.remove()
    log_probs = model.ctc_log_probs(model.encoder.ln(seen[0]))
    return model.ctc_loss(log_probs, memory_lengths, tokens, (tokens != IGNORE_ID).sum(dim=1))


def test_intermediate_ctc_mixes_the_middle_blocks_loss_into_training_only(shared_data):
    waves, lengths = fsdd_batch(shared_data, GUIDED_NAMES)
    base = deterministic_training_model()
    mixed = deterministic_training_model(intermediate_ctc_weight=0.4)  # no new parameters: the same model
    plain, out = base(waves, lengths, GUIDED_TOKENS), mixed(waves, lengths, GUIDED_TOKENS)
    middle = middle_block_ctc_loss(base, waves, lengths, GUIDED_TOKENS)
    assert abs(middle.item() - plain["ctc_loss"].item()) > 0.01  # an untrained model: the two differ a little
    torch.testing.assert_close(out["ctc_loss"], 0.6 * plain["ctc_loss"] + 0.4 * middle)
    torch.testing.assert_close(out["loss"], plain["loss"] + base.cfg.ctc_loss_weight * 0.4 * (middle - plain["ctc_loss"]))
    with torch.no_grad():
        assert torch.equal(mixed.eval()(waves, lengths, GUIDED_TOKENS)["loss"],
                           base.eval()(waves, lengths, GUIDED_TOKENS)["loss"])


def test_self_conditioning_adds_the_projected_middle_posteriors_in_decoding_too(shared_data):
    waves, lengths = fsdd_batch(shared_data, GUIDED_NAMES)
    plain = tiny_model(intermediate_ctc_weight=0.3)
    conditioned = tiny_model(intermediate_ctc_weight=0.3, self_conditioning=True)
    missing, unexpected = conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["encoder.condition.weight", "encoder.condition.bias"] and not unexpected
    with torch.no_grad():
        reference, _ = plain.encode(waves, lengths)
        assert not torch.allclose(conditioned.encode(waves, lengths)[0], reference)
        conditioned.encoder.condition.weight.zero_()
        conditioned.encoder.condition.bias.zero_()
        torch.testing.assert_close(conditioned.encode(waves, lengths)[0], reference)


@pytest.mark.parametrize("options, message", [
    (dict(intermediate_ctc_weight=1.0), r"intermediate_ctc_weight must be in \[0, 1\)"),
    (dict(intermediate_ctc_weight=0.3, arch="lstm"), "needs the transformer encoder"),
    (dict(intermediate_ctc_weight=0.3, encoder_layers=1), "needs the transformer encoder with at least 2"),
    (dict(self_conditioning=True), "self_conditioning needs intermediate_ctc_weight > 0"),
])
def test_intermediate_ctc_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(vocab_size=V, **options)


def peaked_log_probs(frames, length: int) -> torch.Tensor:
    """[T, V] CTC log-probabilities peaked on each frame's label, padded to `length` frames."""
    labels = torch.tensor(frames + [0] * (length - len(frames)))
    return (10.0 * torch.nn.functional.one_hot(labels, V)).log_softmax(-1)


def test_expected_frames_follow_the_ctc_path_or_the_diagonal_and_end_on_the_last_frame():
    blank = 0
    log_probs = torch.stack([peaked_log_probs([blank, 3, blank, 4, 4, blank], 6),
                             peaked_log_probs([5, 5, 6], 6)])  # 3 frames cannot hold 5 _ 5 6
    lengths = torch.tensor([6, 3])
    tokens = torch.tensor([[3, 4, IGNORE_ID], [5, 5, 6]])
    token_lengths = torch.tensor([2, 3])
    ctc = tiny_model(guided_attention_weight=1.0).expected_frames(log_probs, lengths, tokens, token_lengths)
    assert ctc[0, :3].tolist() == [1.0, 3.0, 5.0]  # tokens where CTC puts them, EOS on the last frame
    assert ctc[1].tolist() == [0.0, 1.0, 2.0, 2.0]  # no CTC path fits: the diagonal
    diagonal = tiny_model(guided_attention_weight=1.0, guided_attention_path="diagonal")
    assert diagonal.expected_frames(log_probs, lengths, tokens, token_lengths)[0, :3].tolist() == [1.0, 4.0, 5.0]


def test_training_with_guided_attention_lowers_the_penalty(shared_data):
    """On the diagonal, a target that stays put (an untrained CTC head's path moves as it learns):
    0.47 -> 0.17 in 15 steps, where training without the penalty leaves it at 0.44."""
    model = deterministic_training_model(guided_attention_weight=20.0, guided_attention_path="diagonal")
    waves, lengths = fsdd_batch(shared_data, GUIDED_NAMES)
    penalties, _ = adam_steps(model, waves, lengths, GUIDED_TOKENS, steps=15, record="guided_loss")
    assert penalties[-1] < 0.5 * penalties[0]


@pytest.mark.parametrize("option, value, message", [
    ("guided_attention_weight", -1.0, "guided_attention_weight must be >= 0"),
    ("guided_attention_sigma", 0.0, "guided_attention_sigma must be > 0"),
    ("guided_attention_path", "straight", "guided_attention_path must be one of ctc, diagonal"),
    ("guided_attention_decay_steps", -5, "guided_attention_decay_steps must be >= 0"),
    ("ctc_loss_weight", 0.0, "needs ctc_loss_weight > 0"),
])
def test_guided_attention_options_are_checked(option, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(vocab_size=V, **{"guided_attention_weight": 1.0, option: value})


def test_dropout_keeps_its_share_scaled_and_is_seeded():
    from asr.layers import Dropout
    drop = Dropout(0.1).train()
    x = torch.ones(200, 1000)
    torch.manual_seed(0)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - 26 / 256)) < 0.003  # p rounds to 26/256
    assert torch.allclose(y[y != 0], torch.tensor(256 / 230))  # kept values scaled by 1 / (1 - p)
    assert abs(y.mean().item() - 1.0) < 0.005
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
    rows = drop.train()(torch.ones(4, 3, 5)).flatten(1)  # odd sizes: the mask still covers every element
    assert rows.shape == (4, 15)


def test_attention_with_dropout_off_in_training_equals_the_fused_kernel():
    """Training takes the explicit path (to use Dropout); dropping nothing, it must give what SDPA gives."""
    from asr.layers import Dropout, MultiHeadAttention
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2, dropout=0.0)
    x, source = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    k, v = attn.project_key_value(source)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]
    fused, _ = attn.attend(x, k, v, mask)
    explicit, weights = attn.attend(x, k, v, mask, need_weights=True)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    assert weights[1, :, :, 4:].abs().max() == 0
    ks, vs = attn.project_key_value(x)
    causal_fused, _ = attn.attend(x, ks, vs, is_causal=True)
    attn.dropout = Dropout(1e-9)  # p > 0 takes the explicit path in training; it rounds to dropping nothing
    causal_explicit, _ = attn.train().attend(x, ks, vs, is_causal=True)
    torch.testing.assert_close(causal_explicit, causal_fused, atol=1e-5, rtol=1e-5)


def test_lstm_architecture_is_checked_and_sized_by_the_same_options():
    lstm = tiny_model(arch="lstm")
    assert lstm.alignment_heads.shape == (1, 1)  # one attention "head" in one "layer"
    assert lstm.encoder.lstm.num_layers == PRESETS["tiny"]["encoder_layers"] and lstm.encoder.lstm.bidirectional
    assert len(lstm.decoder.cells) == PRESETS["tiny"]["decoder_layers"]
    assert ModelConfig.from_dict(lstm.cfg.to_dict()).arch == "lstm"
    with pytest.raises(ValueError, match="arch must be one of"):
        ModelConfig(vocab_size=V, arch="gru")
    with pytest.raises(ValueError, match="even d_model"):
        ModelConfig(vocab_size=V, arch="lstm", d_model=65)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_an_encoder_window_longer_than_the_input_encodes_it_whole(shared_data, arch):
    model = tiny_model(arch=arch)
    waves, lengths = fsdd_batch(shared_data, ["0_george_0.wav", "1_jackson_0.wav"])
    with torch.no_grad():
        whole, whole_lengths = model.encode(waves, lengths)
        windowed, windowed_lengths = model.encode(waves, lengths, window=whole.shape[1])
    assert torch.equal(whole, windowed) and torch.equal(whole_lengths, windowed_lengths)


def test_each_windowed_frame_is_the_middle_of_its_own_window():
    """Frame t comes from the window of W frames starting at t // (W/2) · W/2 − W/4 (at least 0, at most
    the utterance's length − W), encoded alone as if it were a whole utterance: positions from 0."""
    model = tiny_model()
    x = torch.randn(2, 200, model.cfg.d_model)
    lengths = torch.tensor([200, 130])
    window = 64
    with torch.no_grad():
        out, out_lengths, _ = model.encoder.windowed(x, lengths, None, window)
        whole, _, _ = model.encoder.run_blocks(x, lengths, None)
        assert out.shape == x.shape and torch.equal(out_lengths, lengths)
        for b, t in [(0, 0), (0, 15), (0, 16), (0, 100), (0, 199), (1, 70), (1, 129)]:
            start = min(max(t // 32 * 32 - 16, 0), int(lengths[b]) - window)
            alone, _, _ = model.encoder.run_blocks(x[b:b + 1, start:start + window], torch.tensor([window]), None)
            assert torch.allclose(out[b, t], alone[0, t - start], atol=1e-5)
        assert not torch.allclose(out[0, 100], whole[0, 100], atol=1e-3)  # the test can fail
