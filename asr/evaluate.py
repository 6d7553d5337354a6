"""Scoring a model on a test manifest: decode, normalise references exactly as in training, count
errors, and write a per-utterance report, a summary and attention plots."""
import json
import logging
import os
from collections import Counter
from dataclasses import asdict
from typing import Dict, List, Optional, Sequence, Tuple

from .config import BATCH_SECONDS, MAX_BATCH_SIZE
from .decode import DecodingOptions
from .fileio import atomic_output
from .metrics import AttentionFailures, ErrorCounts, mixed_errors, utterance_errors
from .segments import Segment, checked_segments, windows
from .text import has_han, normalize_text, writes_without_spaces
from .transcribe import STREAM_WINDOW, Recognizer, Timing, Transcript

log = logging.getLogger(__name__)
Counts = Tuple[ErrorCounts, ErrorCounts]  # one utterance's character and word errors


def evaluate(recognizer: Recognizer, manifest: str, out_dir: str, options: Optional[DecodingOptions] = None,
             batch_seconds: float = BATCH_SECONDS, max_batch_size: int = MAX_BATCH_SIZE, plots: int = 3,
             progress: bool = False, group_by: Sequence[str] = (), window: int = STREAM_WINDOW) -> Dict:
    """Decodes every utterance as `asr transcribe` does (whole, or cut at pauses where longer than the
    options' chunk limit) and returns the summary also written to OUT_DIR/summary.json. Options
    default to the model file's recommended ones. `group_by` names manifest keys (speaker, lang, or
    corpus keys such as age_group) whose every value gets its own CER and WER. Every line of the
    manifest is checked before anything is decoded; then `window` utterances at a time are decoded,
    scored and written, so memory does not grow with the test set."""
    for _ in checked_segments(manifest, need_text=True):  # a bad line fails now, not after hours of decoding
        pass
    options = options or recognizer.options()
    scores, timing, first = Scores(recognizer, group_by), Timing(), []
    os.makedirs(out_dir, exist_ok=True)
    with atomic_output(os.path.join(out_dir, "results.jsonl")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for segments in windows(checked_segments(manifest, need_text=True), window):
            transcripts = recognizer.transcribe_segments(segments, options, batch_seconds, max_batch_size,
                                                         progress=progress)
            timing.add(transcripts.timing)
            refs = [normalize_text(s.text or "", recognizer.lang, numerals=recognizer.numerals) for s in segments]
            write_results(f, refs, transcripts, scores.add(segments, refs, transcripts))
            first += list(zip(segments, transcripts))[:max(0, plots - len(first))]
    summary = scores.summary()
    summary.update(rtf=timing.rtf, audio_seconds=timing.audio_seconds, compute_seconds=timing.compute_seconds,
                   load_seconds=timing.load_seconds, manifest=os.path.abspath(manifest), decoding=asdict(options),
                   chunk_seconds=recognizer.chunk_limit(options), device=str(recognizer.device))
    with atomic_output(os.path.join(out_dir, "summary.json")) as tmp, open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    if first:
        plot_alignments(recognizer, [s for s, _ in first], [t for _, t in first], options, out_dir)
    return summary


class Scores:
    """Error counts of a test set scored in parts: every count adds up, so the totals equal scoring
    it whole."""

    def __init__(self, recognizer: Recognizer, group_by: Sequence[str]):
        self.lang, self.tokenizer, self.group_by = recognizer.lang, recognizer.tokenizer, list(group_by)
        self.chars, self.words, self.mixed = ErrorCounts(), ErrorCounts(), ErrorCounts()
        self.failures = AttentionFailures()
        self.utterances = self.sentence_errors = self.loop_guard = self.empty = self.characters = 0
        self.unknown: Counter = Counter()
        self.groups: Dict[str, Dict[str, Tuple[ErrorCounts, ErrorCounts, int]]] = {key: {} for key in self.group_by}

    def add(self, segments: Sequence[Segment], refs: List[str], transcripts: Sequence[Transcript]) -> List[Counts]:
        """Adds a window's utterances; returns each one's (character, word) counts, for its report line."""
        hyps = [t.text for t in transcripts]
        counts = [utterance_errors(ref, hyp) for ref, hyp in zip(refs, hyps)]
        for chars, words in counts:
            self.chars += chars
            self.words += words
        if writes_without_spaces(self.lang):
            self.mixed += mixed_errors(refs, hyps)
        # loops and skips are counted over words: in Chinese each character is one
        as_words = (lambda t: " ".join(t)) if writes_without_spaces(self.lang) else (lambda t: t)
        for ref, hyp in zip(refs, hyps):
            self.failures.add(as_words(ref), as_words(hyp))
        self.utterances += len(refs)
        self.sentence_errors += sum(r != h for r, h in zip(refs, hyps))
        self.loop_guard += sum(t.loop_guard_fired for t in transcripts)
        self.empty += sum(not ref for ref in refs)  # any word the model says there is an insertion
        unknown, characters = self.tokenizer.coverage(refs)
        self.unknown.update(unknown)
        self.characters += characters
        for key in self.group_by:
            for segment, (chars, words) in zip(segments, counts):
                value = getattr(segment, key, None) if key in ("speaker", "lang") else segment.info.get(key)
                group_chars, group_words, n = self.groups[key].get(str(value), (ErrorCounts(), ErrorCounts(), 0))
                self.groups[key][str(value)] = (group_chars + chars, group_words + words, n + 1)
        return counts

    def summary(self) -> Dict:
        summary = dict(cer=self.chars.rate, wer=self.words.rate, num_utterances=self.utterances,
                       char_errors=self.chars.to_dict(), word_errors=self.words.to_dict(),
                       sentence_errors=self.sentence_errors, attention_failures=asdict(self.failures),
                       loop_guard_fired=self.loop_guard,
                       groups={key: {value: dict(cer=c.rate, wer=w.rate, num_utterances=n)
                                     for value, (c, w, n) in sorted(values.items())}
                               for key, values in self.groups.items()},
                       unknown_reference_characters=sum(self.unknown.values()), reference_characters=self.characters,
                       unknown_reference_examples=dict(self.unknown.most_common(20)), empty_references=self.empty)
        if writes_without_spaces(self.lang):
            summary.update(mer=self.mixed.rate, mixed_errors=self.mixed.to_dict())
        return summary


def write_results(f, refs: List[str], transcripts: List[Transcript], counts: List[Counts]) -> None:
    """Lines of the per-utterance report (results.jsonl) into the open file `f`."""
    for ref, t, (chars, words) in zip(refs, transcripts, counts):
        f.write(json.dumps(dict(id=t.name, ref=ref, hyp=t.text, score=t.score, duration=round(t.duration, 3),
                                char=chars.to_dict(), word=words.to_dict()), ensure_ascii=False) + "\n")


def format_summary(summary: Dict) -> str:
    c, w, f = summary["char_errors"], summary["word_errors"], summary["attention_failures"]
    return (f"CER {100 * summary['cer']:.2f}% (S {c['substitutions']}, D {c['deletions']}, I {c['insertions']} "
            f"of {c['reference_length']} chars)  WER {100 * summary['wer']:.2f}% (S {w['substitutions']}, "
            f"D {w['deletions']}, I {w['insertions']} of {w['reference_length']} words)  "
            + (f"MER {100 * summary['mer']:.2f}% (of {summary['mixed_errors']['reference_length']} Han characters "
               f"and other words)  " if "mer" in summary else "")
            + f"{summary['num_utterances']} utterances  RTF {summary['rtf']:.4f}  "
            f"(early stops {f['early_stops']}, skips {f['skips']}, loops {f['loops']}"
            + (f", loop guard fired {summary['loop_guard_fired']} times" if summary["decoding"]["loop_guard"] else "")
            + ")"
            + (f"\n  {summary['unknown_reference_characters']} of {summary['reference_characters']} reference characters "
               f"are outside the model's vocabulary (it cannot write them), e.g. "
               + " ".join(summary["unknown_reference_examples"]) if summary.get("unknown_reference_characters") else "")
            + (f"\n  {summary['empty_references']} of {summary['num_utterances']} references are empty (all the model "
               "says there counts as insertions)"
               if summary.get("empty_references") else "")
            + "".join(f"\n  {key}={value}: CER {100 * g['cer']:.2f}%  WER {100 * g['wer']:.2f}%  "
                      f"{g['num_utterances']} utterances"
                      for key, values in summary.get("groups", {}).items() for value, g in values.items()))


def plot_alignments(recognizer: Recognizer, segments: List[Segment], transcripts: List[Transcript], options: DecodingOptions,
                    out_dir: str) -> List[str]:
    """PNGs of the cross-attention each hypothesis was decoded with; skipped without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no attention plots (pip install 'attend-asr[plots]')")
        return []
    use_han_font(plt, recognizer.tokenizer.tokens)
    paths, heads = [], heads_label(recognizer.model.alignment_heads)
    for segment, transcript in zip(segments, transcripts):
        tokens = recognizer.tokenizer.encode(transcript.text)
        weights = recognizer.attention(segment.load(recognizer.sample_rate), tokens, options)
        paths.append(os.path.join(out_dir, f"attention_{_safe(segment.id)}.png"))
        save_attention_plot(plt, weights.numpy(), recognizer.tokenizer.tokens, tokens, recognizer.model.seconds_per_frame,
                            f"{segment.id} ({heads}): {transcript.text}", paths[-1])
    return paths


HAN_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "AR PL UMing CN",
             "Source Han Sans SC", "SimHei", "Microsoft YaHei", "PingFang SC")


def use_han_font(plt, vocabulary: Sequence[str]) -> None:
    """Chinese labels need a font with Han glyphs, which matplotlib's own DejaVu Sans lacks: put an
    installed one first in the fallback list, or say once which package gives one."""
    if not any(map(has_han, vocabulary)):
        return
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    if not installed & set(HAN_FONTS):  # matplotlib's font cache predates a font installed since: look again
        for path in font_manager.findSystemFonts():
            if path not in {f.fname for f in font_manager.fontManager.ttflist}:
                font_manager.fontManager.addfont(path)
        installed = {f.name for f in font_manager.fontManager.ttflist}
    found = [name for name in HAN_FONTS if name in installed]
    if found:
        plt.rcParams["font.sans-serif"] = [found[0]] + [f for f in plt.rcParams["font.sans-serif"] if f != found[0]]
    else:
        import warnings
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        log.warning("no font with Chinese characters is installed: the attention plots' labels show as boxes "
                    "(apt-get install fonts-noto-cjk, or fonts-wqy-zenhei)")


def heads_label(alignment_heads) -> str:
    """Which cross-attention heads a plot averages: "all heads", or "heads 1.2 2.0" (layer.head)."""
    if bool(alignment_heads.all()):
        return "all heads"
    return "heads " + " ".join(f"{layer}.{head}" for layer, head in alignment_heads.nonzero().tolist())


def save_attention_plot(plt, weights, vocabulary: List[str], tokens: List[int], seconds_per_frame: float,
                        title: str, path: str) -> None:
    labels = [vocabulary[t] for t in tokens] + ["<eos>"]
    fig, ax = plt.subplots(figsize=(min(24, 3 + weights.shape[1] * 0.06), min(24, 1.5 + len(labels) * 0.22)))
    ax.imshow(weights, aspect="auto", origin="upper", interpolation="nearest", cmap="viridis",
              extent=(0, weights.shape[1] * seconds_per_frame, len(labels) - 0.5, -0.5))
    if len(labels) <= 120:
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("encoder time (s)")
    ax.set_ylabel("output token")
    ax.set_title(title[:120], fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
