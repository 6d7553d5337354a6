import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.augment import (AugmentConfig, Augmenter, coloured_noise, mix_at_snr, narrowband, simulated_rir,
                         speed_perturb)
from asr.errors import ASRError

SR = 16000


def tone(freq, seconds=1.0, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def snr_db(speech, output):
    """SNR of what augmentation added (output - speech) against the speech."""
    return 20 * np.log10(rms(speech) / rms(output.astype(np.float64) - speech))


def peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
    return np.argmax(spectrum) * SR / (8 * len(x))


def frame_db(x, frame):
    """Energy in dB of consecutive frames of `frame` samples."""
    x = x[:len(x) // frame * frame].astype(np.float64).reshape(-1, frame)
    return 10 * np.log10(np.square(x).sum(1) + 1e-30)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_changes_length_and_pitch_by_the_factor(factor):
    x = tone(440)
    y = speed_perturb(x, SR, factor)
    assert y.dtype == np.float32
    assert abs(len(y) - len(x) / factor) <= 0.01 * len(x) / factor
    assert abs(peak_hz(y) - 440 * factor) < 2.0  # 396 or 484 Hz, far from 440


def band_db(x, low, high):
    """Energy in dB of x between low and high Hz."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return 10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() + 1e-30)


def test_narrowband_removes_what_an_8_khz_channel_cannot_carry():
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    y = narrowband(x, SR, 8000)
    assert y.dtype == np.float32 and len(y) == len(x)
    assert band_db(x, 4200, 8000) - band_db(y, 4200, 8000) > 45  # gone above the channel's 4 kHz
    assert abs(band_db(x, 100, 3500) - band_db(y, 100, 3500)) < 0.2  # kept below it
    np.testing.assert_array_equal(narrowband(x, SR, SR), x)
    assert Augmenter(AugmentConfig(narrowband_prob=1.0), SR).enabled
    out = Augmenter(AugmentConfig(narrowband_prob=1.0, narrowband_rate=8000), SR)(x, np.random.default_rng(1))
    np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0, 20.0, 35.0])
def test_mix_at_snr_hits_the_requested_snr(target):
    rng = np.random.default_rng(0)
    speech = tone(300) + tone(1200, amplitude=0.1)
    out = mix_at_snr(speech, rng.standard_normal(len(speech)) * 3.0, target)
    assert out.dtype == np.float32
    assert abs(snr_db(speech, out) - target) < 0.5


def test_mix_at_snr_leaves_silent_speech_and_rejects_mismatched_lengths():
    silent = np.zeros(1000, np.float32)
    np.testing.assert_array_equal(mix_at_snr(silent, np.ones(1000), 10.0), silent)
    with pytest.raises(ValueError, match="shape"):
        mix_at_snr(silent, np.ones(999), 10.0)


@pytest.mark.parametrize("beta,slope", [(0, 0.0), (1, -10.0), (2, -20.0)])
def test_coloured_noise_has_the_expected_spectral_slope(beta, slope):
    noise = coloured_noise(2 ** 17, beta, np.random.default_rng(beta))
    assert abs(rms(noise) - 1.0) < 1e-6
    frames = noise.reshape(-1, 1024) * np.hanning(1024)
    power = np.mean(np.abs(np.fft.rfft(frames)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(1024, 1 / SR)
    band = (freqs >= 100) & (freqs <= 5000)
    measured = np.polyfit(np.log10(freqs[band]), 10 * np.log10(power[band]), 1)[0]  # dB per decade
    assert abs(measured - slope) < 2.0


def test_reverb_keeps_length_and_rms_and_decays_60_db_over_rt60():
    aug = Augmenter(AugmentConfig(reverb_prob=1.0, rt60=[0.5, 0.5]), SR)
    impulse = np.zeros(SR, np.float32)
    impulse[0] = 1.0
    out = aug(impulse, np.random.default_rng(3))
    assert len(out) == len(impulse) and abs(rms(out) - rms(impulse)) < 1e-4 * rms(impulse)
    energy = frame_db(out, 160)  # 10 ms frames
    t = (np.arange(len(energy)) + 0.5) * 0.01
    tail = (t > 0.02) & (t < 0.45)
    decay = np.polyfit(t[tail], energy[tail], 1)[0]  # dB per second
    assert abs(decay - (-60 / 0.5)) < 0.15 * 120
    assert np.all(energy[t > 0.5] < energy[1] - 100)  # the simulated RIR ends at RT60

    burst = np.concatenate([tone(500, 0.3), np.zeros(int(0.3 * SR), np.float32)])
    wet = aug(burst, np.random.default_rng(4))
    assert len(wet) == len(burst) and abs(rms(wet) - rms(burst)) < 1e-4 * rms(burst)
    after = slice(int(0.32 * SR), int(0.4 * SR))  # 20-100 ms after the tone stopped
    assert rms(burst[after]) == 0 and rms(wet[after]) > 0.05 * rms(burst)


def test_simulated_rir_starts_with_the_direct_path():
    rir = simulated_rir(0.3, SR, np.random.default_rng(0))
    assert len(rir) == int(0.3 * SR) and rir[0] == 1.0 and np.abs(rir[1:]).max() == pytest.approx(1.0)


def test_volume_stays_within_the_db_range():
    aug = Augmenter(AugmentConfig(volume_db=[-6.0, 3.0]), SR)
    x = tone(440, 0.2)
    gains = [20 * np.log10(rms(aug(x, np.random.default_rng(seed))) / rms(x)) for seed in range(50)]
    assert -6.0 - 1e-4 <= min(gains) < -4.0 and 1.0 < max(gains) <= 3.0 + 1e-4


def full_config(**kwargs):
    base = dict(speed_factors=[0.9, 1.0, 1.1], volume_db=[-6.0, 6.0], noise_prob=1.0, reverb_prob=1.0)
    return AugmentConfig(**{**base, **kwargs})


def test_same_seed_gives_the_same_output_and_another_seed_another():
    aug = Augmenter(full_config(), SR)
    x = tone(440, 0.5)
    a, b = aug(x, np.random.default_rng(7)), aug(x, np.random.default_rng(7))
    c = aug(x, np.random.default_rng(8))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_defaults_are_off_and_leave_the_input_and_the_rng_untouched():
    assert not Augmenter(AugmentConfig(speed_factors=[1.0]), SR).enabled
    aug = Augmenter(AugmentConfig(), SR)
    assert not aug.enabled
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    x = tone(440, 0.2)
    out = aug(x, rng)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)
    assert rng.bit_generator.state == state
    assert Augmenter(AugmentConfig(noise_prob=0.1), SR).enabled


def test_noise_dir_mixes_excerpts_of_real_files_looping_short_ones(tmp_path):
    (tmp_path / "noise" / "sub").mkdir(parents=True)
    short = np.random.default_rng(0).uniform(-0.3, 0.3, SR // 4)  # 0.25 s: must be looped
    sf.write(tmp_path / "noise" / "sub" / "short.wav", short, SR)
    sf.write(tmp_path / "noise" / "hum.flac", tone(3000, 2.0), SR)
    (tmp_path / "noise" / "notes.txt").write_text("not audio")
    aug = Augmenter(AugmentConfig(noise_prob=1.0, noise_snr_db=[10.0, 10.0], noise_dir=str(tmp_path / "noise")), SR)
    assert len(aug.noise_files) == 2
    x = tone(440)
    seen, hums = set(), []
    for seed in range(12):
        out = aug(x, np.random.default_rng(seed))
        added = out.astype(np.float64) - x
        assert abs(snr_db(x, out) - 10.0) < 0.5
        if abs(peak_hz(added) - 3000) < 2:
            seen.add("hum")
            hums.append(added)
        else:
            np.testing.assert_allclose(added[SR // 4:], added[:-SR // 4], atol=1e-3 * np.abs(added).max())
            seen.add("short")
    assert seen == {"hum", "short"}
    assert any(not np.allclose(h, hums[0], atol=1e-3) for h in hums[1:])  # excerpts start at random
    assert len(aug._cache) == 2


def test_rir_dir_convolves_with_the_file_from_its_direct_path(tmp_path):
    rir = np.zeros(2000)
    rir[50], rir[850] = 0.9, 0.45  # 50 samples of delay, an echo 50 ms after the direct path
    sf.write(tmp_path / "room.wav", rir, SR, subtype="FLOAT")
    aug = Augmenter(AugmentConfig(reverb_prob=1.0, rir_dir=str(tmp_path)), SR)
    x = np.zeros(SR, np.float32)
    x[100] = 1.0
    out = aug(x, np.random.default_rng(0))
    assert np.argmax(np.abs(out)) == 100  # not delayed
    assert out[900] / out[100] == pytest.approx(0.5, abs=1e-4)
    assert abs(rms(out) - rms(x)) < 1e-4 * rms(x)


@pytest.mark.parametrize("field", ["noise_dir", "rir_dir"])
def test_folders_without_audio_are_refused(tmp_path, field):
    (tmp_path / "readme.txt").write_text("no audio here")
    with pytest.raises(ValueError, match=f"{field}.*no audio files"):
        Augmenter(AugmentConfig(**{field: str(tmp_path)}), SR)
    with pytest.raises(ASRError, match="not a folder"):
        Augmenter(AugmentConfig(**{field: str(tmp_path / "missing")}), SR)


def test_babble_sums_other_utterances_at_equal_level():
    freqs = []

    def other_utterance(rng):
        f = 300 + 200 * len(freqs)  # one frequency per talker, so their spectra do not overlap
        freqs.append(f)
        return tone(f, 2.0, amplitude=float(rng.choice([0.01, 1.0])))

    aug = Augmenter(AugmentConfig(noise_prob=1.0, noise_snr_db=[0.0, 0.0], babble_speakers=[3, 3]), SR,
                    other_utterance)
    x = tone(2000, amplitude=0.2)
    kinds = []
    for seed in range(12):
        freqs.clear()
        out = aug(x, np.random.default_rng(seed))
        added = out.astype(np.float64) - x
        assert abs(snr_db(x, out) - 0.0) < 0.5
        if not freqs:
            kinds.append("coloured")
            continue
        kinds.append("babble")
        assert len(freqs) == 3
        spectrum = np.abs(np.fft.rfft(added))  # 1 Hz bins: every tone falls on one
        assert spectrum[freqs].sum() ** 2 > 0.99 * np.square(spectrum).sum()
        assert spectrum[freqs].max() / spectrum[freqs].min() < 1.05  # each talker at unit RMS, whatever its level
    assert {"babble", "coloured"} <= set(kinds)


def test_silence_and_empty_input_stay_finite():
    aug = Augmenter(full_config(), SR, other_utterance=lambda rng: tone(700))
    for seed in range(6):
        out = aug(np.zeros(SR, np.float32), np.random.default_rng(seed))
        assert np.isfinite(out).all() and not out.any()
    assert aug(np.zeros(0, np.float32), np.random.default_rng(0)).size == 0


def test_real_speech(shared_data):
    speech = load_audio(str(shared_data / "fsdd" / "recordings" / "3_jackson_7.wav"), SR)
    rng = np.random.default_rng(0)
    fast = Augmenter(AugmentConfig(speed_factors=[1.1]), SR)(speech, rng)
    assert abs(len(fast) - len(speech) / 1.1) <= 0.01 * len(speech)
    noisy = Augmenter(AugmentConfig(noise_prob=1.0, noise_snr_db=[5.0, 5.0]), SR)(speech, rng)
    assert abs(snr_db(speech, noisy) - 5.0) < 0.5
    wet = Augmenter(AugmentConfig(reverb_prob=1.0), SR)(speech, rng)
    assert len(wet) == len(speech) and abs(rms(wet) - rms(speech)) < 1e-3 * rms(speech)
    assert np.corrcoef(wet, speech)[0, 1] < 0.95  # it did change


@pytest.mark.parametrize("kwargs,field", [
    (dict(speed_factors=[0.9, 0.0]), "speed_factors"), (dict(speed_factors=[-1.1]), "speed_factors"),
    (dict(noise_prob=1.5), "noise_prob"), (dict(reverb_prob=-0.1), "reverb_prob"),
    (dict(volume_db=[3.0, -3.0]), "volume_db"), (dict(volume_db=[1.0]), "volume_db"),
    (dict(noise_snr_db=[20.0, 5.0]), "noise_snr_db"), (dict(babble_speakers=[0, 2]), "babble_speakers"),
    (dict(babble_speakers=[2.5, 3]), "babble_speakers"), (dict(rt60=[0.0, 0.5]), "rt60"),
    (dict(rt60=[0.8, 0.2]), "rt60"), (dict(narrowband_prob=2.0), "narrowband_prob"),
    (dict(narrowband_rate=0), "narrowband_rate"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**kwargs)


def test_join_with_pauses_keeps_the_pieces_and_draws_each_pause():
    from asr.augment import join_with_pauses

    rng = np.random.default_rng(0)
    pieces = [np.full(100, 0.5, np.float32), np.full(50, -0.5, np.float32), np.full(10, 0.25, np.float32)]
    joined = join_with_pauses(pieces, [0.01, 0.02], 16000, rng)
    assert 160 + 2 * 160 <= len(joined) <= 160 + 2 * 320
    assert np.array_equal(joined[:100], pieces[0]) and np.array_equal(joined[-10:], pieces[2])
    assert np.sum(joined == -0.5) == 50
    with pytest.raises(ASRError):
        AugmentConfig(concat_pause=[-0.1, 0.2])
    with pytest.raises(ASRError):
        AugmentConfig(concat_prob=1.5)
