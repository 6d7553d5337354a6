"""Long-form transcription in one call: test utterances joined, with pauses, into one recording of at
least --minutes, transcribed by one `Recognizer.transcribe` call, scored against the joined
references, and compared with the CER of the same utterances decoded one by one.

    python bench/long_form.py --model exp/fsdd_connected/model.pt --manifest DATA/test.jsonl
      [--minutes 20] [--pause 0.3 1.0] [--set chunk_seconds=0 window_from=ctc ...]

The pauses carry faint noise (1e-4 RMS), as a room would. Prints the two CERs, their ratio, the
real-time factor and the process' peak memory, and the command that made them."""
import argparse
import resource
import shlex
import sys

import numpy as np
import torch

from asr.config import apply_overrides
from asr.decode import DecodingOptions
from asr.errors import ASRError
from asr.inputs import manifest_segments
from asr.metrics import character_errors
from asr.text import normalize_text
from asr.transcribe import Recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", required=True, help="utterances to join, in order (repeated if too few)")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--pause", type=float, nargs=2, default=[0.3, 1.0], metavar=("LOW", "HIGH"),
                        help="seconds of pause between utterances, drawn uniformly")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="DecodingOptions on top of the model file's, for both runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = Recognizer.load(args.model)
    try:
        options = recognizer.options(**apply_overrides({}, args.set, DecodingOptions))
    except ASRError as e:
        parser.error(str(e))
    segments, rng, sr = manifest_segments(args.manifest), np.random.default_rng(args.seed), recognizer.sample_rate
    chosen, pieces, seconds = [], [], 0.0
    while seconds < args.minutes * 60:
        segment = segments[len(chosen) % len(segments)]
        pause = rng.standard_normal(int(rng.uniform(*args.pause) * sr)).astype(np.float32) * 1e-4
        pieces += [segment.load(sr), pause]
        chosen.append(segment)
        seconds += segment.duration + len(pause) / sr
    recording = np.concatenate(pieces)
    refs = [normalize_text(s.text or "", recognizer.lang) for s in chosen]

    one_by_one = recognizer.transcribe_segments(chosen, options)
    per_utterance = character_errors(refs, [t.text for t in one_by_one])
    joined = recognizer.transcribe(recording, options)
    whole = character_errors([" ".join(refs)], [joined[0].text])
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f"`python bench/long_form.py {shlex.join(sys.argv[1:])}`: {len(chosen)} utterances joined into "
          f"{len(recording) / sr / 60:.1f} min; chunk limit {recognizer.chunk_limit(options)}\n")
    print("| decoded | CER % | S | D | I | RTF |\n|---|---:|---:|---:|---:|---:|")
    for name, counts, timing in (("one by one", per_utterance, one_by_one.timing), ("joined, one call", whole,
                                                                                  joined.timing)):
        print(f"| {name} | {100 * counts.rate:.2f} | {counts.substitutions} | {counts.deletions} | "
              f"{counts.insertions} | {timing.rtf:.4f} |")
    print(f"\njoined / one by one: {whole.rate / max(per_utterance.rate, 1e-9):.2f}; peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
