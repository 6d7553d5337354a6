"""Decoding speed: greedy and beam search with joint CTC, one utterance at a time and batched, as
milliseconds per decoder step and real-time factor.

Random weights are fine for speed, but a random decoder ends at an arbitrary step, so every search is
held to exactly --steps decoder steps (min_tokens = max_tokens = steps − 1, then EOS), as ESPnet's
decoding benchmark runs a fixed --out-len. Time includes the encoder; audio is white noise.

    python bench/decode.py [--presets small espnet6x3] [--seconds 5] [--steps 60] [--threads 2]

Prints markdown rows for BENCHMARKS.md."""
import argparse
import statistics
import time

import torch

from asr.decode import DecodingOptions, decode_memory
from asr.model import PRESETS, ASRModel, ModelConfig

SEARCHES = {"greedy": DecodingOptions(beam_size=1), "beam 10 + CTC 0.3": DecodingOptions(beam_size=10, ctc_weight=0.3)}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "espnet6x3"], choices=sorted(PRESETS))
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per utterance")
    parser.add_argument("--steps", type=int, default=60, help="decoder steps per search")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="utterances decoded together")
    parser.add_argument("--vocab", type=int, default=32, help="characters, specials included")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"{args.seconds:g} s of audio per utterance, {args.steps} decoder steps, {args.threads} threads, "
          f"vocabulary {args.vocab}; RTF = (encoder + search) / audio")
    print("| preset | search | utterances | encoder ms | search ms | ms / step | RTF |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for preset in args.presets:
        model = ASRModel(ModelConfig(vocab_size=args.vocab, **PRESETS[preset])).eval()
        for name, search in SEARCHES.items():
            options = DecodingOptions(**{**search.__dict__, "min_tokens": args.steps - 1, "max_tokens": args.steps - 1})
            for batch in args.batches:
                audio = torch.randn(batch, int(args.seconds * model.cfg.features.sample_rate)) * 0.1
                lengths = torch.full((batch,), audio.shape[1])
                with torch.inference_mode():
                    memory, memory_lengths = model.encode(audio, lengths)
                    encoder = median_seconds(lambda: model.encode(audio, lengths), args.repeats)
                results = decode_memory(model, memory, memory_lengths, options)
                assert all(len(r.tokens) == args.steps - 1 for r in results)
                decoding = median_seconds(lambda: decode_memory(model, memory, memory_lengths, options), args.repeats)
                rtf = (encoder + decoding) / (batch * args.seconds)
                print(f"| {preset} | {name} | {batch} | {encoder * 1e3:.0f} | {decoding * 1e3:.0f} | "
                      f"{decoding * 1e3 / args.steps:.1f} | {rtf:.3f} |", flush=True)


if __name__ == "__main__":
    main()
