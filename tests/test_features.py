import librosa
import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.features import FeatureConfig, LogMel, SpecAugment, SpecAugmentConfig, log_mel

JFK = "clips/en/whisper_jfk.flac"  # 11 s, 44.1 kHz stereo
DIGIT = "fsdd/recordings/3_jackson_7.wav"  # 8 kHz
CARDS = "clips/en/pocketsphinx_cards_005.wav"
MANDARIN = "clips/zh/wenet_aishell-BAC009S0724W0121.wav"


def librosa_log_mel(audio: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    power = librosa.feature.melspectrogram(y=audio, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                           win_length=cfg.win_length, window="hann", center=True, power=2.0,
                                           n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    return np.log(np.maximum(power, cfg.log_floor)).T


@pytest.mark.parametrize("clip", [JFK, DIGIT, MANDARIN])
def test_log_mel_matches_librosa_on_real_speech(clip, shared_data):
    audio = load_audio(str(shared_data / clip))
    expected = librosa_log_mel(audio)
    feats = log_mel(audio).numpy()
    assert feats.shape == expected.shape == (1 + len(audio) // 160, 80)
    # float32 round-off only matters where the power is near zero
    audible = expected > np.log(1e-6)
    assert audible.mean() > 0.5
    assert np.abs(feats - expected)[audible].max() < 1e-3
    assert np.abs(feats - expected).max() < 0.05


def test_other_configs_match_librosa(shared_data):
    cfg = FeatureConfig(n_fft=400, win_length=320, hop_length=128, n_mels=40, fmin=20.0, fmax=7600.0)
    audio = load_audio(str(shared_data / CARDS))
    expected = librosa_log_mel(audio, cfg)
    feats = log_mel(audio, cfg).numpy()
    assert feats.shape == expected.shape == (1 + len(audio) // 128, 40)
    audible = expected > np.log(1e-6)
    assert np.abs(feats - expected)[audible].max() < 1e-3


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")
@pytest.mark.parametrize("samples", [1, 159, 160, 161, 4000, 4095])
def test_frame_counts_match_librosa(samples):
    audio = np.random.default_rng(samples).standard_normal(samples).astype(np.float32)
    assert log_mel(audio).shape[0] == librosa_log_mel(audio).shape[0] == 1 + samples // 160


def test_padded_batch_equals_items_one_by_one(shared_data):
    clips = [load_audio(str(shared_data / name)) for name in (JFK, DIGIT, CARDS)]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.full((3, int(lengths.max())), 0.7)  # padding that would leak if it were used
    for row, clip in zip(batch, clips):
        row[: len(clip)] = torch.from_numpy(clip)
    feats, frames = LogMel()(batch, lengths)
    assert frames.tolist() == [1 + len(c) // 160 for c in clips]
    for item, (clip, n) in enumerate(zip(clips, frames.tolist())):
        torch.testing.assert_close(feats[item, :n], log_mel(clip), rtol=0, atol=1e-5)
        assert torch.all(feats[item, n:] == 0)


def test_precision_follows_the_module_and_ignores_autocast(shared_data):
    audio = torch.from_numpy(load_audio(str(shared_data / DIGIT)))[None]
    lengths = torch.tensor([audio.shape[1]])
    reference, _ = LogMel()(audio, lengths)
    double, _ = LogMel().double()(audio, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast, _ = LogMel()(audio, lengths)
    assert double.dtype == torch.float64 and autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, reference, rtol=0, atol=0)
    audible = reference > np.log(1e-6)
    assert (double.float() - reference).abs()[audible].max() < 1e-3


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="win_length"):
        FeatureConfig(win_length=600)
    with pytest.raises(ValueError, match="fmax"):
        FeatureConfig(fmax=9000.0)


# -- SpecAugment ----------------------------------------------------------------------------------

def padded_batch(lengths, n_mels: int = 80, pad_value: float = 5.0):
    """Features of ones in the valid frames and `pad_value` after, so masks (zeros) are easy to see."""
    lengths = torch.tensor(lengths)
    frames = torch.arange(int(lengths.max()))[None, :, None]
    return torch.where(frames < lengths[:, None, None], 1.0, pad_value).expand(-1, -1, n_mels).clone(), lengths


def augment(feats, lengths, seed: int, **config):
    specaug = SpecAugment(SpecAugmentConfig(**config)).train()
    return specaug(feats, lengths, generator=torch.Generator().manual_seed(seed))


def test_specaugment_is_identity_in_eval_mode():
    feats, lengths = padded_batch([300, 120])
    assert SpecAugment().eval()(feats, lengths) is feats


def test_specaugment_masks_whole_bins_and_frames_inside_each_utterance():
    lengths = [1000, 400, 60]
    feats, lengths_t = padded_batch(lengths)
    out = augment(feats, lengths_t, seed=0)
    for item, length in enumerate(lengths):
        valid = out[item, :length]
        assert torch.all(out[item, length:] == 5.0)
        assert set(valid.unique().tolist()) <= {0.0, 1.0}
        masked_bins = (valid == 0).all(dim=0)
        masked_frames = (valid == 0).all(dim=1)
        # every zero lies in a masked bin or a masked frame
        assert torch.equal(valid == 0, masked_bins[None, :] | masked_frames[:, None])
        assert masked_bins.sum() <= 2 * 27
        assert masked_frames.sum() <= 2 * min(40, int(0.05 * length))


def test_specaugment_masked_fractions_match_the_config():
    feats, lengths = padded_batch([1000] * 256)
    out = augment(feats, lengths, seed=1)
    bins = (out == 0).all(dim=1).float().mean(dim=1)
    frames = (out == 0).all(dim=2).float().mean(dim=1)
    # two bands of width uniform in 0..27 of 80 bins (0..40 of 1000 frames): 2 * 13.5 / 80 bins and
    # 2 * 20 / 1000 frames on average, less the bands' overlap, which is frequent only for bins
    assert 0.28 < bins.mean() < 2 * 13.5 / 80
    assert frames.mean() == pytest.approx(2 * 20 / 1000, abs=0.003)
    assert bins.max() <= 54 / 80 and frames.max() <= 80 / 1000


def test_specaugment_is_reproducible_from_the_generator():
    feats, lengths = padded_batch([500, 300])
    assert torch.equal(augment(feats, lengths, seed=7), augment(feats, lengths, seed=7))
    assert not torch.equal(augment(feats, lengths, seed=7), augment(feats, lengths, seed=8))


def test_time_warp_moves_frames_by_at_most_the_window():
    lengths = torch.tensor([200, 100, 12])  # 12 < 2 * 5 + 3: too short to warp
    ramp = torch.arange(200.0)[None, :, None].expand(3, -1, 4).clone()  # each frame holds its index
    out = augment(ramp, lengths, seed=3, freq_masks=0, time_masks=0, time_warp=5)
    for item, length in enumerate(lengths.tolist()):
        warped = out[item, :length, 0]
        assert warped[0] == 0 and warped[-1] == length - 1
        assert torch.all(warped.diff() > 0)
        assert (warped - torch.arange(length)).abs().max() <= 5
        assert torch.equal(out[item, length:], ramp[item, length:])
    assert not torch.equal(out[:2], ramp[:2])
    assert torch.equal(out[2], ramp[2])


def test_utterance_mean_normalisation_removes_a_channel_offset_and_keeps_padding():
    from asr.features import utterance_mean_normalize

    torch.manual_seed(0)
    feats = torch.randn(2, 50, 80)
    lengths = torch.tensor([50, 30])
    feats[1, 30:] = 0.0
    coloured = feats + torch.linspace(-3, 3, 80)  # a microphone's fixed tilt across mel bins
    coloured[1, 30:] = 0.0
    plain, tilted = utterance_mean_normalize(feats, lengths), utterance_mean_normalize(coloured, lengths)
    torch.testing.assert_close(plain, tilted, atol=1e-5, rtol=0)  # the offset is gone
    torch.testing.assert_close(plain[1, :30].mean(0), torch.zeros(80), atol=1e-5, rtol=0)
    assert plain[1, 30:].abs().max() == 0
