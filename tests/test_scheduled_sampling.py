import pytest
import torch
import torch.nn.functional as F

from asr.audio import load_audio
from asr.features import SpecAugmentConfig
from asr.model import IGNORE_ID, PRESETS, ASRModel, ModelConfig
from asr.scheduled_sampling import ScheduledSamplingConfig, mix_predictions

NAMES = ["1_george_5.wav", "2_jackson_6.wav", "8_nicolas_7.wav"]
TOKENS = torch.tensor([[5, 6, 7, 5], [8, 9, IGNORE_ID, IGNORE_ID], [10, 11, 4, 9]])


def model_with(sampling: ScheduledSamplingConfig, deterministic: bool = False) -> ASRModel:
    torch.manual_seed(0)
    extra = dict(dropout=0.0, specaugment=SpecAugmentConfig(freq_masks=0, time_masks=0)) if deterministic else {}
    return ASRModel(ModelConfig(vocab_size=12, scheduled_sampling=sampling, **PRESETS["tiny"], **extra)).train()


@pytest.fixture(scope="module")
def batch(shared_data):
    waves = [torch.from_numpy(load_audio(str(shared_data / "fsdd" / "recordings" / n))) for n in NAMES]
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves])


@pytest.mark.parametrize("off", [ScheduledSamplingConfig(prob=0.0, schedule="constant", ramp_steps=5),
                                 ScheduledSamplingConfig(prob=0.5, start_step=100)])
def test_probability_zero_is_teacher_forcing_bit_for_bit(batch, off):
    waves, lengths = batch
    outs, grads = [], []
    for sampling in (ScheduledSamplingConfig(), off):
        model = model_with(sampling)  # dropout and SpecAugment on: the same random draws in both
        torch.manual_seed(1)
        out = model(waves, lengths, TOKENS, generator=torch.Generator().manual_seed(0), step=50)
        out["loss"].backward()
        outs.append(out["loss"])
        grads.append([p.grad for p in model.parameters()])
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_schedules_ramp_from_the_start_step_to_prob():
    constant = ScheduledSamplingConfig(prob=0.4, schedule="constant", start_step=10)
    linear = ScheduledSamplingConfig(prob=0.4, schedule="linear", start_step=10, ramp_steps=100)
    sigmoid = ScheduledSamplingConfig(prob=0.4, schedule="sigmoid", start_step=10, ramp_steps=100)
    assert [constant.probability(s) for s in (9, 10, 500)] == [0.0, 0.4, 0.4]
    assert [linear.probability(s) for s in (9, 10, 60, 110, 500)] == pytest.approx([0, 0, 0.2, 0.4, 0.4])
    assert sigmoid.probability(10) < 0.01 and sigmoid.probability(60) == pytest.approx(0.2)
    assert sigmoid.probability(110) > 0.39 and sigmoid.probability(35) < linear.probability(35)  # slower at first
    for bad in (dict(prob=1.5), dict(schedule="cosine"), dict(ramp_steps=0), dict(start_step=-1)):
        with pytest.raises(ValueError):
            ScheduledSamplingConfig(**bad)


def test_mix_replaces_reference_tokens_with_the_prediction_for_their_position():
    inputs = torch.tensor([[1, 5, 6, 7]])  # BOS, then the reference
    predictions = torch.tensor([[8, 9, 10, 11]])  # guesses of 5, 6, 7 and of what follows 7
    assert torch.equal(mix_predictions(inputs, predictions, 1.0), torch.tensor([[1, 8, 9, 10]]))
    assert torch.equal(mix_predictions(inputs, predictions, 0.0), inputs)
    many = mix_predictions(torch.zeros(200, 101, dtype=torch.long), torch.ones(200, 101, dtype=torch.long), 0.3,
                           torch.Generator().manual_seed(0))
    assert (many[:, 0] == 0).all() and many[:, 1:].float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_full_sampling_trains_on_the_first_pass_predictions(batch):
    waves, lengths = batch
    sampled = model_with(ScheduledSamplingConfig(prob=1.0, schedule="constant"), deterministic=True)
    out = sampled(waves, lengths, TOKENS)
    memory, memory_lengths = sampled.encode(waves, lengths)
    inputs, targets = sampled.decoder_io(TOKENS)
    first, _ = sampled.decoder(inputs, memory, memory_lengths)
    own = torch.cat([inputs[:, :1], first.argmax(-1)[:, :-1]], dim=1)
    logits, _ = sampled.decoder(own, memory, memory_lengths)
    expected = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_ID, reduction="sum",
                               label_smoothing=sampled.cfg.label_smoothing) / 3
    torch.testing.assert_close(out["att_loss"], expected)
    teacher_forced = F.cross_entropy(first.transpose(1, 2), targets, ignore_index=IGNORE_ID, reduction="sum",
                                     label_smoothing=sampled.cfg.label_smoothing) / 3
    assert not torch.allclose(out["att_loss"], teacher_forced)  # an untrained model's guesses differ
    with torch.no_grad():
        assert torch.allclose(sampled.eval()(waves, lengths, TOKENS)["att_loss"], teacher_forced)
