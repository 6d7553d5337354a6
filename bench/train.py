"""Training throughput: optimiser steps (forward with SpecAugment and dropout, joint CTC/attention
loss, backward, gradient clipping, AdamW), as audio seconds trained per wall second.

    python bench/train.py [--presets small base] [--batch 8] [--seconds 5] [--tokens 60] [--threads 2]
                          [--amp none bf16] [--set KEY=VALUE ...]
    python bench/train.py --manifest exp/so/data/train.jsonl [--batch-seconds 40] [--batches 24] ...

Without --manifest: one fixed batch of random audio and labels (the cost of a step does not depend on
what is said), the median of --repeats steps. With --manifest: the first --batches duration-bucketed
batches of that corpus (as training draws them, --batch-seconds of padded audio each), so padding,
varying shapes and real transcript lengths count; all steps in one timed pass, after a warm-up pass.
Prints markdown rows."""
import argparse
import os
import sys
import time
from typing import Callable, List, Tuple

import torch

from asr.config import AMP_MODES, apply_overrides
from asr.data import BucketBatchSampler, SpeechDataset, collate
from asr.errors import ASRError
from asr.model import PRESETS, ASRModel, ModelConfig
from asr.runtime import autocast
from asr.segments import load_manifest
from asr.text import CharTokenizer, normalize_text

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decode import median_seconds  # noqa: E402  (warm-up call, then the median of `repeats` timed calls)

Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # waveforms, lengths, tokens


def optimiser_step(model: ASRModel, amp: str) -> Callable[[Batch], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch: Batch) -> None:
        with autocast(amp, torch.device("cpu")):
            loss = model(*batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return step


def random_batch(args) -> Tuple[List[Batch], int]:
    audio = torch.randn(args.batch, int(args.seconds * 16000)) * 0.1
    lengths = torch.full((args.batch,), audio.shape[1])
    return [(audio, lengths, torch.randint(3, args.vocab, (args.batch, args.tokens)))], args.vocab


def corpus_batches(args) -> Tuple[List[Batch], int]:
    segments = load_manifest(args.manifest)
    dataset = SpeechDataset(segments, CharTokenizer.build(normalize_text(s.text or "", "en") for s in segments))
    sampler = BucketBatchSampler([s.duration for s in dataset.segments], args.batch_seconds, seed=0)
    batches = [collate([dataset[i] for i in indices]) for _, indices in zip(range(args.batches), sampler)]
    return [(b.waveforms, b.waveform_lengths, b.tokens) for b in batches], len(dataset.tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "base"], choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=8, help="utterances per step")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per utterance")
    parser.add_argument("--tokens", type=int, default=60, help="characters per transcript")
    parser.add_argument("--vocab", type=int, default=31)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--manifest", help="time real batches of this corpus instead of one random batch")
    parser.add_argument("--batch-seconds", type=float, default=40.0, help="padded audio per batch (--manifest)")
    parser.add_argument("--batches", type=int, default=24, help="batches timed (--manifest)")
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
        batches, vocab = corpus_batches(args) if args.manifest else random_batch(args)
    except ASRError as e:
        parser.error(str(e))
    audio = sum(b[1].sum().item() for b in batches) / 16000
    if args.manifest:
        print(f"{len(batches)} batches of {args.manifest} ({args.batch_seconds:g} s buckets, {audio:.0f} s of "
              f"audio), {args.threads} threads, one warm-up pass then one timed pass")
    else:
        print(f"batch {args.batch} x {args.seconds:g} s, {args.tokens} tokens each, {args.threads} threads, "
              f"median of {args.repeats} steps")
    print("| preset | precision | parameters | seconds | audio s / wall s |")
    print("|---|---|---:|---:|---:|")
    for preset in args.presets:
        for amp in args.amp:
            torch.manual_seed(0)
            model = ASRModel(ModelConfig.from_dict({**PRESETS[preset], **overrides, "vocab_size": vocab})).train()
            step = optimiser_step(model, amp)
            if args.manifest:
                for batch in batches:
                    step(batch)
                start = time.perf_counter()
                for batch in batches:
                    step(batch)
                seconds = time.perf_counter() - start
            else:
                seconds = median_seconds(lambda: step(batches[0]), args.repeats)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"| {preset} | {'float32' if amp == 'none' else amp} | {params:.2f} M | {seconds:.3f} "
                  f"| {audio / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
