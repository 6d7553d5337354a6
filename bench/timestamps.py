"""Word timestamp accuracy where the truth is known exactly: each line of an fsdd_connected manifest
gives every digit's true start and end (`words`: where its trimmed FSDD recording was placed, see
data_prep/fsdd_connected.py). Decodes the manifest once per source of word times (DecodingOptions.
timestamps) and reports the median and 95th percentile of the absolute error of word starts, of word
ends and of both, in ms, over the hypothesis words that the word alignment pairs with an equal reference word.

    python bench/timestamps.py --model MODEL.pt --manifest DATA/fsdd_connected/test.jsonl [--limit 100]
      [--set snap_seconds=0.1 snap_db=20 ...]

Prints a markdown table for BENCHMARKS.md and the command that made it."""
import argparse
import difflib
import shlex
import sys
from typing import List, Sequence, Tuple

import numpy as np
import torch

from asr.config import apply_overrides
from asr.decode import DecodingOptions
from asr.errors import ASRError
from asr.inputs import manifest_segments
from asr.transcribe import Recognizer

SOURCES = ("attention", "ctc")
Word = Tuple[str, float, float]


def boundary_errors(reference: Sequence[Word], hypothesis: Sequence[Word]) -> Tuple[List[float], List[float]]:
    """Start and end errors (s, hypothesis − truth) of the hypothesis words that the word alignment of
    hypothesis to reference pairs with an equal reference word (a word dropped or added earlier does
    not pair the words after it with the wrong ones)."""
    matcher = difflib.SequenceMatcher(None, [w[0] for w in reference], [w[0] for w in hypothesis], autojunk=False)
    matched = [(reference[block.a + i], hypothesis[block.b + i])
               for block in matcher.get_matching_blocks() for i in range(block.size)]
    return [h[1] - r[1] for r, h in matched], [h[2] - r[2] for r, h in matched]


def describe(errors: Sequence[float]) -> str:
    """Median and 95th percentile of |error|, and the median signed error, in ms."""
    ms = 1000 * np.asarray(errors)
    if not len(ms):
        return "– | – | –"
    return f"{np.median(np.abs(ms)):.0f} | {np.percentile(np.abs(ms), 95):.0f} | {np.median(ms):+.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model file")
    parser.add_argument("--manifest", required=True, help="fsdd_connected manifest (with `words` in each line)")
    parser.add_argument("--limit", type=int, help="only the first N utterances")
    parser.add_argument("--beam-size", type=int, help="default: what the model file recommends")
    parser.add_argument("--chunk-seconds", type=float, help="cut longer utterances at pauses (test_long)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other DecodingOptions changes, e.g. snap_seconds=0 to leave word times unsnapped")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    segments = manifest_segments(args.manifest)[: args.limit]
    if not all("words" in s.info for s in segments):
        sys.exit(f"{args.manifest}: lines without `words`: prepare it again with `asr prep fsdd_connected`")
    references = [[tuple(w) for w in s.info["words"]] for s in segments]
    recognizer = Recognizer.load(args.model, args.device)
    try:  # default: each utterance whole
        overrides = dict(chunk_seconds=args.chunk_seconds or 0.0, **apply_overrides({}, args.set, DecodingOptions))
        DecodingOptions(**overrides)  # checks the values now, not after loading the model
    except (ASRError, ValueError) as e:
        parser.error(str(e))
    if args.beam_size is not None:
        overrides["beam_size"] = args.beam_size
    print(f"`python bench/timestamps.py {shlex.join(sys.argv[1:])}`: {len(segments)} utterances, "
          f"{sum(map(len, references))} words; errors in ms (hypothesis − truth)\n")
    print("| source | words matched | start median | start p95 | start bias | end median | end p95 | end bias "
          "| boundary median | boundary p95 | bias |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for source in SOURCES:
        options = recognizer.options(**overrides, timestamps=source)
        transcripts = recognizer.transcribe_segments(segments, options)
        starts, ends = [], []
        for reference, transcript in zip(references, transcripts):
            s, e = boundary_errors(reference, transcript.words)
            starts += s
            ends += e
        print(f"| {source} | {len(starts)} of {sum(map(len, references))} | {describe(starts)} | {describe(ends)} "
              f"| {describe(starts + ends)} |", flush=True)


if __name__ == "__main__":
    main()
