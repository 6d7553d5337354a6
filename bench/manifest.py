"""Memory and time of reading a large manifest the way `asr evaluate` and `asr transcribe` do.

    python bench/manifest.py [--lines 1000000 100000] [--work /tmp/manifest_bench]

Writes a manifest of --lines lines (LibriSpeech-like: id, absolute audio path, duration, a
~60-character text, speaker; every line names one small file as its audio: each line's path is still
its own string in memory, as json.loads makes a new one per line), then in
a fresh process per reader measures the peak resident memory (ru_maxrss) above the process's
footprint after imports, and the seconds, of:
  read_manifest    streaming the lines (segments.read_manifest, counted, none kept)
  load_manifest    every segment in a list (training's load_data, asr data tools)
  collect_segments inputs.collect_segments([manifest]): checked_manifest (a stat of each line's audio,
                   durations from the line) into a list, as Recognizer.transcribe returns them
  iter_segments    inputs.iter_segments([manifest]) in windows of 10,000 (segments.windows): how
                   `asr transcribe` and `asr evaluate` read a manifest (Recognizer.stream), none kept
Prints markdown rows."""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

READERS = {
    "read_manifest": "from asr.segments import read_manifest\nresult = sum(1 for _ in read_manifest(path))",
    "load_manifest": "from asr.segments import load_manifest\nresult = len(load_manifest(path))",
    "collect_segments": "from asr.inputs import collect_segments\nresult = len(collect_segments([path], 16000))",
    "iter_segments": "from asr.inputs import iter_segments\nfrom asr.segments import windows\n"
                     "result = sum(len(w) for w in windows(iter_segments([path], 16000), 10_000))",
}


def write_manifest(path: str, lines: int, audio: str) -> None:
    words = "the quick brown fox jumps over the lazy dog and keeps on running far away".split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            text = " ".join(words[(i + k) % len(words)] for k in range(11))
            f.write(json.dumps(dict(id=f"spk{i % 2000:04d}-ch{i // 2000:04d}-{i:07d}", audio=audio,
                                    duration=round(2 + (i * 7919 % 1300) / 100, 2), text=text,
                                    speaker=f"spk{i % 2000:04d}")) + "\n")


def measure(reader: str, path: str) -> dict:
    code = f"""
import resource, time, json, sys
sys.path.insert(0, {ROOT!r})
import numpy, torch, soundfile  # imported by the readers: their memory is not the manifest's
import asr.segments, asr.inputs
path = {path!r}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
{READERS[reader]}
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(result=result, seconds=seconds, base_mb=before / 1024, peak_mb=peak / 1024)))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[100000, 1000000])
    parser.add_argument("--readers", nargs="+", default=list(READERS), choices=list(READERS))
    parser.add_argument("--work", default="/tmp/manifest_bench")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    audio = os.path.join(args.work, "a.wav")
    with open(audio, "wb") as f:  # any non-empty file: collect_segments stats it, reads no header (durations given)
        f.write(b"RIFF" + bytes(40))
    print("| reader | lines | manifest MB | peak RSS above imports (MB) | bytes per line | seconds |")
    print("|---|---|---|---|---|---|")
    for lines in args.lines:
        path = os.path.join(args.work, f"m{lines}.jsonl")
        if not os.path.exists(path):
            write_manifest(path, lines, audio)
        size = os.path.getsize(path) / 2**20
        for reader in args.readers:
            r = measure(reader, path)
            assert r["result"] == lines, r
            grown = r["peak_mb"] - r["base_mb"]
            print(f"| {reader} | {lines:,} | {size:.0f} | {grown:.0f} | {grown * 2**20 / lines:.0f} | {r['seconds']:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
