"""Accuracy and speed of each search setting on a trained model: CER with substitution/deletion/
insertion counts, the attention failures (utterances that stop early, skip or loop; see
asr.metrics.AttentionFailures) and the real-time factor, as markdown rows.

    python bench/decoding.py --model exp/fsdd/model.pt --manifest exp/fsdd/data/test.jsonl [--manifest ...]
      [--settings greedy beam beam+ctc beam+window beam+ctc+window beam+ctc+ctc-window]
      [--set window_forward=32 chunk_seconds=5 ...]

Every utterance is decoded whole unless --set chunk_seconds=N cuts longer ones at pauses; "window"
follows the frame attended last, "ctc-window" the frame CTC's alignment of the hypothesis has reached
(triggered attention). The outputs of each run are kept under --out/<manifest>/<setting>/."""
import argparse
import os
from dataclasses import replace

import torch

from asr.config import apply_overrides
from asr.errors import ASRError
from asr.decode import DecodingOptions
from asr.evaluate import evaluate
from asr.transcribe import Recognizer

WINDOW = dict(window_back=4, window_forward=12)  # encoder frames of 40 ms; widen with --set
SETTINGS = {
    "greedy": DecodingOptions(beam_size=1, ctc_weight=0.0),
    "greedy+window": DecodingOptions(beam_size=1, ctc_weight=0.0, **WINDOW),
    "beam": DecodingOptions(ctc_weight=0.0),
    "beam+ctc": DecodingOptions(),
    "beam+window": DecodingOptions(ctc_weight=0.0, **WINDOW),
    "beam+ctc+window": DecodingOptions(**WINDOW),
    "beam+ctc+ctc-window": DecodingOptions(window_from="ctc", **WINDOW),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", action="append", required=True)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=sorted(SETTINGS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="DecodingOptions changes applied to every setting, e.g. length_penalty=0, or "
                             "chunk_seconds=5 to cut longer utterances at pauses (default: each whole)")
    parser.add_argument("--out", default="exp/bench_decoding")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        changes = {"chunk_seconds": 0.0, **apply_overrides({}, args.set, DecodingOptions)}
    except ASRError as e:
        parser.error(str(e))
    recognizer = Recognizer.load(args.model)
    print("| test set | search | CER % | S | D | I | WER % | early stops | skips | loops | RTF |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for manifest in args.manifest:
        name = os.path.splitext(os.path.basename(manifest))[0]
        cut = changes["chunk_seconds"]
        label = name + (f" (cut at pauses, ≤ {cut:g} s)" if cut else "")
        for setting in args.settings:
            options = replace(SETTINGS[setting], **changes)
            out = os.path.join(args.out, f"{name}_cut{cut:g}" if cut else name, setting)
            s = evaluate(recognizer, manifest, out, options, plots=0)
            c, f = s["char_errors"], s["attention_failures"]
            print(f"| {label} | {setting} | {100 * s['cer']:.2f} | {c['substitutions']} | {c['deletions']} | "
                  f"{c['insertions']} | {100 * s['wer']:.2f} | {f['early_stops']} | {f['skips']} | {f['loops']} | "
                  f"{s['rtf']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
