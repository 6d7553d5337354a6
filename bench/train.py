"""Training throughput: one optimiser step (forward with SpecAugment and dropout, joint CTC/attention
loss, backward, gradient clipping, AdamW) on a fixed batch, as audio seconds trained per wall second.

    python bench/train.py [--presets small base] [--batch 8] [--seconds 5] [--tokens 60] [--threads 2]
                          [--amp none bf16]

Random audio and labels: the cost of a step does not depend on what is said. Prints markdown rows."""
import argparse
import os
import sys

import torch

from asr.config import apply_overrides
from asr.errors import ASRError
from asr.config import AMP_MODES
from asr.model import PRESETS, ASRModel, ModelConfig
from asr.runtime import autocast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decode import median_seconds  # noqa: E402  (warm-up call, then the median of `repeats` timed calls)


def step_seconds(model: ASRModel, audio: torch.Tensor, lengths: torch.Tensor, tokens: torch.Tensor,
                 repeats: int, amp: str) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast(amp, torch.device("cpu")):
            loss = model(audio, lengths, tokens)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return median_seconds(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "base"], choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=8, help="utterances per step")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per utterance")
    parser.add_argument("--tokens", type=int, default=60, help="characters per transcript")
    parser.add_argument("--vocab", type=int, default=31)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--amp", nargs="+", default=["none"], choices=AMP_MODES,
                        help="precision of each row: none (float32) or bf16 (autocast on the CPU)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="ModelConfig overrides on top of each preset, e.g. conv_channels=64 "
                             "specaugment.time_masks=0")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        overrides = apply_overrides({}, args.set, ModelConfig)
    except ASRError as e:
        parser.error(str(e))

    audio = torch.randn(args.batch, int(args.seconds * 16000)) * 0.1
    lengths = torch.full((args.batch,), audio.shape[1])
    tokens = torch.randint(3, args.vocab, (args.batch, args.tokens))
    print(f"batch {args.batch} x {args.seconds:g} s, {args.tokens} tokens each, {args.threads} threads, "
          f"median of {args.repeats} steps")
    print("| preset | precision | parameters | step (s) | audio s / wall s |")
    print("|---|---|---:|---:|---:|")
    for preset in args.presets:
        for amp in args.amp:
            torch.manual_seed(0)
            model = ASRModel(ModelConfig.from_dict({**PRESETS[preset], **overrides, "vocab_size": args.vocab})).train()
            seconds = step_seconds(model, audio, lengths, tokens, args.repeats, amp)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"| {preset} | {'float32' if amp == 'none' else amp} | {params:.2f} M | {seconds:.3f} "
                  f"| {args.batch * args.seconds / seconds:.0f} |", flush=True)

if __name__ == "__main__":
    main()
