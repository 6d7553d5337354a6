"""Leave-one-speaker-out on FSDD: for each of its five speakers, train on the other four and test on
every recording of the one left out. The honest measure of a digits model, which on its own test
split only meets voices it trained on. Prints a markdown row per held-out speaker and their mean.

    python bench/fsdd_loso.py --data exp/fsdd/data [--config recipes/fsdd/conf/train.yaml]
      [--set KEY=VALUE ...] [--speakers george ...] [--out exp/fsdd_loso]
      [--extra-train OTHER.jsonl ... [--extra-weights W ...]]

--data is the output of `asr prep fsdd`. Training uses the four speakers' train split and validates
on their dev split (takes 5-9); the held-out speaker's 500 recordings (all takes) are the test set.
Each run's experiment folder is kept under --out/<speaker>/. --extra-train adds other corpora (none of
FSDD's speakers) to every fold's training, drawn per epoch with --extra-weights (FSDD's weight is 1)."""
import argparse
import json
import os
import shutil
import statistics
import time

from asr.config import load_train_config
from asr.evaluate import evaluate
from asr.segments import load_manifest, write_manifest
from asr.train import train
from asr.transcribe import Recognizer

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")


def split_by_speaker(data: str, held_out: str, folder: str):
    """Manifests for one fold: (train, valid, test) paths under `folder`."""
    splits = {name: load_manifest(os.path.join(data, f"{name}.jsonl")) for name in ("train", "dev", "test")}
    paths = {name: os.path.join(folder, f"{name}.jsonl") for name in ("train", "valid", "test")}
    write_manifest(paths["train"], [s for s in splits["train"] if s.speaker != held_out])
    write_manifest(paths["valid"], [s for s in splits["dev"] if s.speaker != held_out])
    write_manifest(paths["test"], [s for split in splits.values() for s in split if s.speaker == held_out])
    return paths["train"], paths["valid"], paths["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of `asr prep fsdd` manifests")
    parser.add_argument("--config", default="recipes/fsdd/conf/train.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="training config changes")
    parser.add_argument("--speakers", nargs="+", default=list(SPEAKERS), choices=SPEAKERS)
    parser.add_argument("--out", default="exp/fsdd_loso")
    parser.add_argument("--extra-train", nargs="*", default=[], metavar="MANIFEST",
                        help="other corpora trained on in every fold")
    parser.add_argument("--extra-weights", nargs="*", type=float, default=[], metavar="W",
                        help="per-epoch sampling weight of each --extra-train manifest (default 1)")
    args = parser.parse_args()
    if args.extra_weights and len(args.extra_weights) != len(args.extra_train):
        parser.error("give one --extra-weights entry per --extra-train manifest")
    weights = [1.0] + (args.extra_weights or [1.0] * len(args.extra_train))
    cfg = load_train_config(args.config, args.set + ([f"train_weights={weights}"] if args.extra_train else []))
    extra = " ".join(f"{m} (weight {w:g})" for m, w in zip(args.extra_train, weights[1:]))
    print(f"config {args.config} {' '.join(args.set)}" + (f"\nalso training on {extra}" if extra else "") + "\n")
    print("| held-out speaker | test utterances | CER % | WER % | training min |\n|---|---|---|---|---|")
    cers = []
    for speaker in args.speakers:
        folder = os.path.join(args.out, speaker)
        shutil.rmtree(folder, ignore_errors=True)  # this script's own output from an earlier run
        train_manifest, valid_manifest, test_manifest = split_by_speaker(args.data, speaker, folder)
        start = time.perf_counter()
        model = train(cfg, [train_manifest, *args.extra_train], valid_manifest, os.path.join(folder, "exp"))
        minutes = (time.perf_counter() - start) / 60
        summary = evaluate(Recognizer.load(model), test_manifest, os.path.join(folder, "eval"), plots=0)
        cers.append(summary["cer"])
        print(f"| {speaker} | {summary['num_utterances']} | {100 * summary['cer']:.2f} | {100 * summary['wer']:.2f} "
              f"| {minutes:.1f} |", flush=True)
    print(f"| mean | | {100 * statistics.mean(cers):.2f} | | |\n| worst | | {100 * max(cers):.2f} | | |")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(dict(config=args.config, overrides=args.set, extra_train=dict(zip(args.extra_train, weights[1:])),
                       cer=dict(zip(args.speakers, cers))), f, indent=1)


if __name__ == "__main__":
    main()
