"""Side by side with ESPnet on this machine: the same Transformer (6 encoder / 3 decoder blocks,
d=256, 4 heads, feed-forward 2048, conv2d subsampling with 256 channels, joint CTC 0.3), the same
training batch and the same beam search (beam 10 + CTC prefix scoring, 60 output steps on 5 s).

ESPnet runs from the virtual environment made by ../shared/peers/espnet/setup.sh (its bench.py,
features in; ours takes waveforms and computes log-mel features inside, included in our times).
Each side runs --rounds times, alternating, and the table gives medians and ratios.

    bash ../shared/peers/espnet/setup.sh ~/.cache/espnet-peer   # once
    python bench/espnet.py [--peer-python ~/.cache/espnet-peer/bin/python] [--rounds 3]"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

from asr.decode import DecodingOptions, decode_memory
from asr.model import PRESETS, ASRModel, ModelConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decode import median_seconds  # noqa: E402
from train import step_seconds  # noqa: E402

PEER_BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peers", "espnet",
                          "bench.py")


def ours(preset: str, args) -> dict:
    torch.manual_seed(0)
    model = ASRModel(ModelConfig(vocab_size=args.vocab, **PRESETS[preset]))
    samples = args.frames * 160
    audio = torch.randn(args.batch, samples) * 0.1
    lengths = torch.full((args.batch,), samples)
    tokens = torch.randint(3, args.vocab, (args.batch, args.tokens))
    train = step_seconds(model.train(), audio, lengths, tokens, args.repeats)
    model.eval()
    one, one_length = audio[:1], lengths[:1]
    options = DecodingOptions(beam_size=args.beam, ctc_weight=args.ctc_weight, min_tokens=args.out_len - 1,
                              max_tokens=args.out_len - 1)

    def encode_and_search():
        with torch.inference_mode():
            memory, memory_lengths = model.encode(one, one_length)
            return decode_memory(model, memory, memory_lengths, options)

    with torch.inference_mode():
        encode = median_seconds(lambda: model.encode(one, one_length), args.repeats)
    total = median_seconds(encode_and_search, args.repeats)
    audio_s = args.frames / 100
    return dict(params_m=sum(p.numel() for p in model.parameters()) / 1e6, train_step_s=train,
                train_audio_s_per_s=args.batch * audio_s / train,
                search_ms_per_step=(total - encode) / args.out_len * 1000, rtf=total / audio_s)


def peer(args) -> dict:
    command = [args.peer_python, PEER_BENCH, "--d-model", "256", "--heads", "4", "--ff", "2048", "--enc", "6",
               "--dec", "3", "--vocab", str(args.vocab), "--beam", str(args.beam), "--ctc-weight",
               str(args.ctc_weight), "--batch", str(args.batch), "--frames", str(args.frames), "--tokens",
               str(args.tokens), "--out-len", str(args.out_len), "--threads", str(args.threads),
               "--repeats", str(args.repeats)]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"ESPnet's bench failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=os.path.expanduser("~/.cache/espnet-peer/bin/python"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--out-len", type=int, default=60)
    parser.add_argument("--vocab", type=int, default=31)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--ctc-weight", type=float, default=0.3)
    args = parser.parse_args()
    if not os.path.isfile(args.peer_python):
        sys.exit(f"{args.peer_python} not found: run bash ../shared/peers/espnet/setup.sh first")
    torch.set_num_threads(args.threads)
    runs = {"ESPnet 202511": [], "ours (espnet6x3)": [], "ours (small)": []}
    for _ in range(args.rounds):
        runs["ESPnet 202511"].append(peer(args))
        runs["ours (espnet6x3)"].append(ours("espnet6x3", args))
        runs["ours (small)"].append(ours("small", args))
    keys = ("train_step_s", "train_audio_s_per_s", "search_ms_per_step", "rtf")
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in keys} | {"params_m": rs[0]["params_m"]}
               for name, rs in runs.items()}
    base = medians["ESPnet 202511"]
    print(f"{args.threads} threads; train: batch {args.batch} x {args.frames / 100:g} s, {args.tokens} tokens; "
          f"decode: 1 x {args.frames / 100:g} s, beam {args.beam} + CTC {args.ctc_weight}, {args.out_len} steps; "
          f"medians of {args.rounds} alternating rounds")
    print("| implementation | params | train step (s) | train audio s / s | beam ms / step | decode RTF | "
          "train speed-up | decode speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in medians.items():
        print(f"| {name} | {m['params_m']:.2f} M | {m['train_step_s']:.3f} | {m['train_audio_s_per_s']:.0f} | "
              f"{m['search_ms_per_step']:.1f} | {m['rtf']:.3f} | {base['train_step_s'] / m['train_step_s']:.2f}x | "
              f"{base['rtf'] / m['rtf']:.1f}x |")


if __name__ == "__main__":
    main()
