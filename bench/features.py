"""Log-mel speed: asr.features.LogMel against librosa.feature.melspectrogram + log, with the same
parameters, on real English speech from ../shared/data tiled to the benchmark's length.

    python bench/features.py [--repeats 20] [--threads 2]

Prints markdown rows for BENCHMARKS.md."""
import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import librosa
import numpy as np
import torch

from asr.audio import load_audio
from asr.features import FeatureConfig, LogMel

ROOT = Path(__file__).resolve().parents[1]


def english_speech(data: Path, seconds: float, sr: int) -> np.ndarray:
    """The English clips end to end, repeated until `seconds` long."""
    speech = np.concatenate([load_audio(str(p), sr) for p in sorted((data / "clips" / "en").glob("*.*"))])
    return np.resize(speech, int(seconds * sr))


def median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` runs in a row. Not interleaved with the other library: numpy's
    OpenBLAS threads keep spinning after each call and would slow down torch's threads that follow."""
    run()  # warm-up: FFT plans, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def librosa_log_mel(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    power = librosa.feature.melspectrogram(y=audio, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                           win_length=cfg.win_length, window="hann", center=True, power=2.0,
                                           n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    return np.log(np.maximum(power, cfg.log_floor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = FeatureConfig()
    logmel = LogMel(cfg)
    speech = english_speech(args.data, 60.0, cfg.sample_rate)

    print(f"command: python {' '.join(sys.argv)}  (torch {torch.__version__}, librosa {librosa.__version__}, "
          f"{args.threads} torch threads, {args.repeats} repeats)")
    print("| input | LogMel (ms) | librosa (ms) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, batch in (("1 × 60 s", speech[None]), ("8 × 7.5 s", speech.reshape(8, -1))):
        waveforms = torch.from_numpy(batch)
        lengths = torch.full((batch.shape[0],), batch.shape[1])
        with torch.inference_mode():
            ours = median_ms(lambda: logmel(waveforms, lengths), args.repeats)
        theirs = median_ms(lambda: librosa_log_mel(batch, cfg), args.repeats)
        print(f"| {name} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.1f}× |")


if __name__ == "__main__":
    main()
