"""Accuracy and speed of each search setting on a trained model: CER with substitution/deletion/
insertion counts, the attention failures (utterances that stop early, skip or loop; see
asr.metrics.AttentionFailures) and the real-time factor, as markdown rows.

    python bench/decoding.py --model exp/fsdd/model.pt --manifest exp/fsdd/data/test.jsonl [--manifest ...]
      [--settings greedy beam beam+ctc beam+window default] [--set window_forward=20 ...]

Every utterance is decoded whole (no cutting), as `asr evaluate` does; the outputs of each run are
kept under --out/<manifest>/<setting>/."""
import argparse
import os
from dataclasses import replace

import torch

from asr.decode import DecodingOptions
from asr.evaluate import evaluate
from asr.transcribe import Recognizer

NO_WINDOW = dict(window_back=None, window_forward=None)
SETTINGS = {
    "greedy": DecodingOptions(beam_size=1, ctc_weight=0.0, **NO_WINDOW),
    "greedy+window": DecodingOptions(beam_size=1, ctc_weight=0.0),
    "beam": DecodingOptions(ctc_weight=0.0, **NO_WINDOW),
    "beam+ctc": DecodingOptions(**NO_WINDOW),
    "beam+window": DecodingOptions(ctc_weight=0.0),
    "beam+ctc+window": DecodingOptions(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", action="append", required=True)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=sorted(SETTINGS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="DecodingOptions changes applied to every setting, e.g. length_penalty=0")
    parser.add_argument("--out", default="exp/bench_decoding")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    changes = {k: None if v == "none" else type(getattr(DecodingOptions(), k) or 0)(v)
               for k, v in (item.split("=", 1) for item in args.set)}
    recognizer = Recognizer.load(args.model)
    print("| test set | search | CER % | S | D | I | WER % | early stops | skips | loops | RTF |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for manifest in args.manifest:
        name = os.path.splitext(os.path.basename(manifest))[0]
        for setting in args.settings:
            options = replace(SETTINGS[setting], **changes)
            s = evaluate(recognizer, manifest, os.path.join(args.out, name, setting), options, plots=0)
            c, f = s["char_errors"], s["attention_failures"]
            print(f"| {name} | {setting} | {100 * s['cer']:.2f} | {c['substitutions']} | {c['deletions']} | "
                  f"{c['insertions']} | {100 * s['wer']:.2f} | {f['early_stops']} | {f['skips']} | {f['loops']} | "
                  f"{s['rtf']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
