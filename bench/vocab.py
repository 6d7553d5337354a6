"""Beam search speed against vocabulary size: milliseconds per decoder step of the `small` preset with
an alphabet's 30 output tokens and with Mandarin's 4,500 characters, everything else the same.

Random weights end at an arbitrary step, so every search is held to exactly --steps decoder steps
(min_tokens = max_tokens = steps − 1, then EOS, as in bench/decode.py), and every model decodes the
same encoder output (5 s of white noise through the first model's encoder): the vocabularies differ
only in the decoder's output layer, its softmax and top-k, and what else scores each token: the CTC
head and its prefix scores of every token (pre-beam 0) or of each hypothesis' ctc_pre_beam best by
attention, and a character LM of asr train-lm's default size.

    python bench/vocab.py [--vocabs 30 4500] [--batches 1 8] [--steps 60] [--repeats 7] [--threads 2]

Prints markdown rows: per search and batch, the median over --repeats searches of ms per step at each
vocabulary (search time / steps, so the CTC head's one pass over the frames counts too), and the last
vocabulary's time over the first's. The vocabularies take turns within each repeat, so that a busy
machine slows them alike."""
import argparse
import statistics
import time
from dataclasses import replace
from typing import Callable, List, Optional

import torch

from asr.decode import DecodingOptions, decode_memory
from asr.lm import CharLM, LMConfig
from asr.model import PRESETS, ASRModel, ModelConfig

BEAM = DecodingOptions(beam_size=10, ctc_weight=0.0)
CTC = DecodingOptions(beam_size=10, ctc_weight=0.5)
SEARCHES = {  # name: (options, with a language model)
    "beam 10": (BEAM, False),
    "beam 10 + CTC 0.5, every token CTC-scored": (replace(CTC, ctc_pre_beam=0), False),
    f"beam 10 + CTC 0.5, pre-beam {CTC.ctc_pre_beam} (default)": (CTC, False),
    "beam 10 + CTC 0.5, pre-beam 15 (ESPnet's 1.5 × beam)": (replace(CTC, ctc_pre_beam=15), False),
    f"beam 10 + CTC 0.5, pre-beam {CTC.ctc_pre_beam} + LM {CTC.lm_weight:g}": (CTC, True),
}


def median_ms_in_turn(searches: List[Callable[[], object]], repeats: int) -> List[float]:
    """Median milliseconds of each search, after a warm-up, timed one after another in every repeat."""
    for search in searches:
        search()
    times: List[List[float]] = [[] for _ in searches]
    for _ in range(repeats):
        for search, spent in zip(searches, times):
            start = time.perf_counter()
            search()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) * 1e3 for spent in times]


def held_search(model: ASRModel, lm: Optional[CharLM], memory: torch.Tensor, memory_lengths: torch.Tensor,
                options: DecodingOptions, steps: int) -> Callable[[], object]:
    """The search held to exactly `steps` decoder steps, checked once."""
    options = replace(options, min_tokens=steps - 1, max_tokens=steps - 1)
    assert all(len(r.tokens) == steps - 1 for r in decode_memory(model, memory, memory_lengths, options, lm))
    return lambda: decode_memory(model, memory, memory_lengths, options, lm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabs", type=int, nargs="+", default=[30, 4500], help="output tokens, specials included")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per utterance")
    parser.add_argument("--steps", type=int, default=60, help="decoder steps per search")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="utterances decoded together")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    models = [ASRModel(ModelConfig(vocab_size=v, **PRESETS[args.preset])).eval() for v in args.vocabs]
    lms = [CharLM(LMConfig(vocab_size=v)).eval() for v in args.vocabs]
    print(f"{args.preset}, {args.seconds:g} s of audio per utterance, {args.steps} decoder steps, "
          f"{args.threads} threads; median ms per step of {args.repeats} searches")
    print("| search | utterances | " + " | ".join(f"vocabulary {v:,}" for v in args.vocabs)
          + f" | {args.vocabs[-1]:,} / {args.vocabs[0]:,} |")
    print("|---|---:|" + "---:|" * (len(args.vocabs) + 1))
    for batch in args.batches:
        audio = torch.randn(batch, int(args.seconds * models[0].cfg.features.sample_rate)) * 0.1
        with torch.inference_mode():
            memory, memory_lengths = models[0].encode(audio, torch.full((batch,), audio.shape[1]))
        for name, (options, with_lm) in SEARCHES.items():
            searches = [held_search(model, lm if with_lm else None, memory, memory_lengths, options, args.steps)
                        for model, lm in zip(models, lms)]
            ms = [m / args.steps for m in median_ms_in_turn(searches, args.repeats)]
            print(f"| {name} | {batch} | " + " | ".join(f"{m:.1f}" for m in ms) + f" | {ms[-1] / ms[0]:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
