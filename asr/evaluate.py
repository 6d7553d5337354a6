"""Scoring a model on a test manifest: decode, normalise references exactly as in training, count
errors, and write a per-utterance report, a summary and attention plots."""
import json
import logging
import os
from dataclasses import asdict
from typing import Dict, List, Optional, Sequence

from .config import BATCH_SECONDS, MAX_BATCH_SIZE
from .decode import DecodingOptions
from .fileio import atomic_output
from .inputs import manifest_segments
from .metrics import AttentionFailures, character_errors, mixed_errors, utterance_errors, word_errors
from .segments import Segment
from .text import has_han, normalize_text, writes_without_spaces
from .transcribe import Recognizer, Transcript

log = logging.getLogger(__name__)


def evaluate(recognizer: Recognizer, manifest: str, out_dir: str, options: Optional[DecodingOptions] = None,
             batch_seconds: float = BATCH_SECONDS, max_batch_size: int = MAX_BATCH_SIZE, plots: int = 3,
             progress: bool = False, group_by: Sequence[str] = ()) -> Dict:
    """Decodes every utterance as `asr transcribe` does (whole, or cut at pauses where longer than the
    options' chunk limit) and returns the summary also written to OUT_DIR/summary.json. Options
    default to the model file's recommended ones. `group_by` names manifest keys (speaker, lang, or
    corpus keys such as age_group) whose every value gets its own CER and WER."""
    segments = manifest_segments(manifest, need_text=True)
    options = options or recognizer.options()
    transcripts = recognizer.transcribe_segments(segments, options, batch_seconds, max_batch_size, progress=progress)
    refs = [normalize_text(s.text or "", recognizer.lang, numerals=recognizer.numerals) for s in segments]
    hyps = [t.text for t in transcripts]
    chars, words = character_errors(refs, hyps), word_errors(refs, hyps)
    failures = AttentionFailures()
    # loops and skips are counted over words: in Chinese each character is one
    as_words = (lambda t: " ".join(t)) if writes_without_spaces(recognizer.lang) else (lambda t: t)
    for ref, hyp in zip(refs, hyps):
        failures.add(as_words(ref), as_words(hyp))
    timing = transcripts.timing
    summary = dict(cer=chars.rate, wer=words.rate, num_utterances=len(segments), rtf=timing.rtf,
                   char_errors=chars.to_dict(), word_errors=words.to_dict(),
                   sentence_errors=sum(r != h for r, h in zip(refs, hyps)), attention_failures=asdict(failures),
                   loop_guard_fired=sum(t.loop_guard_fired for t in transcripts),
                   audio_seconds=timing.audio_seconds, compute_seconds=timing.compute_seconds,
                   load_seconds=timing.load_seconds, manifest=os.path.abspath(manifest),
                   decoding=asdict(options), chunk_seconds=recognizer.chunk_limit(options), device=str(recognizer.device),
                   groups={key: group_rates(segments, refs, hyps, key) for key in group_by})
    unknown, num_characters = recognizer.tokenizer.coverage(refs)
    summary.update(unknown_reference_characters=sum(unknown.values()), reference_characters=num_characters,
                   unknown_reference_examples=dict(list(unknown.items())[:20]),
                   empty_references=sum(not ref for ref in refs))  # any word the model says there is an insertion
    if writes_without_spaces(recognizer.lang):
        mixed = mixed_errors(refs, hyps)
        summary.update(mer=mixed.rate, mixed_errors=mixed.to_dict())
    os.makedirs(out_dir, exist_ok=True)
    write_results(os.path.join(out_dir, "results.jsonl"), refs, transcripts)
    with atomic_output(os.path.join(out_dir, "summary.json")) as tmp, open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    if plots:
        plot_alignments(recognizer, segments[:plots], transcripts[:plots], options, out_dir)
    return summary


def group_rates(segments: List[Segment], refs: List[str], hyps: List[str], key: str) -> Dict[str, Dict]:
    """CER, WER and utterance count for each value of `key` (a Segment field or a manifest key)."""
    groups: Dict[str, List[int]] = {}
    for i, segment in enumerate(segments):
        value = getattr(segment, key, None) if key in ("speaker", "lang") else segment.info.get(key)
        groups.setdefault(str(value), []).append(i)
    return {value: dict(cer=character_errors([refs[i] for i in rows], [hyps[i] for i in rows]).rate,
                        wer=word_errors([refs[i] for i in rows], [hyps[i] for i in rows]).rate,
                        num_utterances=len(rows))
            for value, rows in sorted(groups.items())}


def write_results(path: str, refs: List[str], transcripts: List[Transcript]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for ref, t in zip(refs, transcripts):
            f.write(json.dumps(dict(id=t.name, ref=ref, hyp=t.text, score=t.score, duration=round(t.duration, 3),
                                    **utterance_errors(ref, t.text)), ensure_ascii=False) + "\n")


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
