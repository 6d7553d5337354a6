import tarfile

import numpy as np
import pytest
import soundfile as sf

from asr.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio, resample

FSDD_WAV = "fsdd/recordings/0_george_0.wav"  # 8 kHz, 2384 samples
CARDS_WAV = "clips/en/pocketsphinx_cards_005.wav"  # 16 kHz, 3.502 s
JFK_FLAC = "clips/en/whisper_jfk.flac"  # 44.1 kHz stereo, 11.0 s
AN4_SPH = "downloads/an4/wav/an4_clstk/fash/cen7-fash-b.sph"  # 16 kHz NIST SPHERE, 2.5 s


def tone(freq: float, sr: int, seconds: float = 1.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def peak_hz(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1 / sr)[spectrum.argmax()]


def energy(audio: np.ndarray) -> float:
    return float(np.mean(audio.astype(np.float64) ** 2))


def test_wav_at_native_rate_is_the_pcm_scaled_to_one(shared_data):
    path = str(shared_data / FSDD_WAV)
    pcm, sr = sf.read(path, dtype="int16")
    audio = load_audio(path, sr=sr)
    assert audio.dtype == np.float32 and audio.shape == (2384,)
    np.testing.assert_array_equal(audio, pcm / np.float32(32768))


def test_8khz_wav_is_upsampled_to_twice_the_samples(shared_data):
    path = str(shared_data / FSDD_WAV)
    audio = load_audio(path)
    assert audio.shape == (2 * 2384,)
    assert energy(audio) == pytest.approx(energy(load_audio(path, sr=8000)), rel=0.02)


def test_44k_stereo_flac_becomes_16k_mono_of_the_same_duration(shared_data):
    path = str(shared_data / JFK_FLAC)
    audio = load_audio(path)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert abs(len(audio) / SAMPLE_RATE - audio_duration(path)) < 0.002
    assert audio_duration(path) == pytest.approx(11.0, abs=0.001)
    stereo, sr = sf.read(path, dtype="float32")
    assert energy(audio) == pytest.approx(energy(stereo.mean(axis=1)), rel=0.02)


def test_ogg_vorbis(tmp_path):
    path = str(tmp_path / "tone.ogg")
    sf.write(path, tone(440, SAMPLE_RATE), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    audio = load_audio(path)
    assert audio.shape == (SAMPLE_RATE,)
    assert peak_hz(audio, SAMPLE_RATE) == pytest.approx(440, abs=2)


def test_nist_sphere(shared_data, tmp_path):
    with tarfile.open(shared_data / "mini_an4/downloads.tar.gz") as archive:
        archive.extract(AN4_SPH, tmp_path, filter="data")
    path = str(tmp_path / AN4_SPH)
    audio = load_audio(path)
    assert audio.shape == (40000,)
    np.testing.assert_array_equal(audio, sf.read(path, dtype="float32")[0])


def test_segment_equals_slice_of_whole_file(shared_data):
    path = str(shared_data / CARDS_WAV)
    whole = load_audio(path)
    np.testing.assert_array_equal(load_audio(path, offset=0.5, duration=1.25), whole[8000:28000])
    np.testing.assert_array_equal(load_audio(path, offset=3.0), whole[48000:])


def test_segment_past_the_end_is_an_error(shared_data):
    path = str(shared_data / CARDS_WAV)
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, offset=3.0, duration=1.0)
    with pytest.raises(AudioError, match="outside the file"):
        load_audio(path, offset=4.0)


def test_upsampling_keeps_the_frequency():
    audio = resample(tone(1000, 8000), 8000, 16000)
    assert audio.shape == (16000,)
    assert peak_hz(audio, 16000) == pytest.approx(1000, abs=1)


def test_downsampling_keeps_tones_inside_the_new_band():
    audio = resample(tone(7000, 44100), 44100, 16000)
    assert peak_hz(audio, 16000) == pytest.approx(7000, abs=1)
    assert energy(audio) == pytest.approx(0.125, rel=0.01)


def test_downsampling_removes_tones_above_the_new_nyquist():
    # without band-limiting, 10 kHz would alias to 6 kHz at full strength
    audio = resample(tone(10000, 44100), 44100, 16000)
    assert energy(audio[100:-100]) < 1e-6 * 0.125


BAD_FILES = {
    "missing": lambda p, src: None,
    "directory": lambda p, src: p.mkdir(),
    "zero_bytes": lambda p, src: p.write_bytes(b""),
    "header_cut": lambda p, src: p.write_bytes(src.read_bytes()[:30]),
    "data_cut": lambda p, src: p.write_bytes(src.read_bytes()[:2406]),  # half of its 4812 bytes
    "text": lambda p, src: p.write_text("this is a transcript, not audio\n" * 20),
    "nan": lambda p, src: sf.write(str(p), np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, "FLOAT"),
    "no_frames": lambda p, src: sf.write(str(p), np.zeros(0, np.float32), 16000),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_unusable_files_raise_audio_error_naming_the_file(kind, shared_data, tmp_path):
    path = tmp_path / f"bad_{kind}.wav"
    BAD_FILES[kind](path, shared_data / FSDD_WAV)
    with pytest.raises(AudioError, match=f"bad_{kind}.wav"):
        load_audio(str(path))
