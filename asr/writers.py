"""Transcripts as text: `path<TAB>text` lines, a JSON array, JSON lines with n-best, scores and
per-token and per-word times, subtitles (SRT, WebVTT) of one recording, or a table of its cues (TSV:
start and end in integer milliseconds, as Whisper writes it); written atomically, never over a user's
file unless asked to. `write_per_input` writes one file per recording and format into a folder, as
Whisper's --output_dir does.

Subtitles are cues of one line each, made from the transcript's timed words in order: a word starts a
new cue when the line would grow past MAX_LINE_CHARS characters or the cue past MAX_CUE_SECONDS (a
single word longer than that is a cue of its own). A subtitle file belongs to one recording, so SRT
and VTT take exactly one transcript: several are refused, never merged into one timeline."""
import json
import os
from typing import Iterable, List, Optional, Sequence, Tuple

from .errors import ASRError
from .fileio import atomic_output, refuse_overwrite

SUBTITLES = ("srt", "vtt", "tsv")  # one recording's timed cues
FORMATS = ("txt", "json", "jsonl") + SUBTITLES
LINE_FORMATS = ("txt", "jsonl")  # a line per transcript: written as the transcripts come
PER_INPUT_FORMATS = ("txt", "json", "srt", "vtt", "tsv")  # what --output-format all writes, as Whisper's
MAX_LINE_CHARS = 42  # the usual limit of a subtitle line (Netflix, BBC: 37-42)
MAX_CUE_SECONDS = 7.0

Cue = Tuple[float, float, str]  # start and end (s), the line


def output_format(path: Optional[str], fmt: Optional[str]) -> str:
    """The format asked for, else the one the output file's extension names, else txt."""
    fmt = fmt or (os.path.splitext(path)[1].lstrip(".") if path else "txt")
    if fmt not in FORMATS:
        raise ASRError(f"--out {path}: cannot tell the format from its extension; pass --format")
    return fmt


def format_transcripts(transcripts: Sequence, fmt: str, separator: str = " ") -> List[str]:
    """Lines (each ending in a newline) of `transcripts` (asr.transcribe.Transcript) in `fmt`; subtitle
    lines join words with `separator` (asr.text.word_separator of the model's language)."""
    if fmt == "txt":
        return [f"{t.name}\t{t.text}\n" for t in transcripts]
    if fmt == "jsonl":
        return [json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in transcripts]
    if fmt in SUBTITLES:
        if len(transcripts) > 1:
            raise ASRError(f"{fmt} subtitles are of one recording; got {len(transcripts)}")
        return format_subtitles([c for t in transcripts for c in subtitle_cues(t.words, separator)], fmt)
    return [json.dumps([t.to_dict() for t in transcripts], ensure_ascii=False, indent=1) + "\n"]


def subtitle_cues(words: Sequence[Tuple[str, float, float]], separator: str = " ",
                  max_chars: int = MAX_LINE_CHARS, max_seconds: float = MAX_CUE_SECONDS) -> List[Cue]:
    """Timed words (word, start, end) grouped in order into one-line cues (see the module's docstring)."""
    cues: List[Cue] = []
    for word, start, end in words:
        if cues:
            first, _, line = cues[-1]
            longer = line + separator + word
            if len(longer) <= max_chars and end - first <= max_seconds:
                cues[-1] = (first, end, longer)
                continue
        cues.append((start, end, word))
    return cues


def timestamp(seconds: float, decimal_mark: str) -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT)."""
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    return f"{hours:02d}:{minutes:02d}:{ms // 1000:02d}{decimal_mark}{ms % 1000:03d}"


def format_subtitles(cues: Sequence[Cue], fmt: str) -> List[str]:
    """SRT (numbered cues, comma before the milliseconds), WebVTT (a header, a full stop), each cue
    followed by a blank line; or TSV (a header, then start, end in milliseconds and the line)."""
    if fmt == "tsv":
        return ["start\tend\ttext\n"] + [f"{round(s * 1000)}\t{round(e * 1000)}\t{line}\n" for s, e, line in cues]
    if fmt == "srt":
        return [f"{i}\n{timestamp(s, ',')} --> {timestamp(e, ',')}\n{line}\n\n"
                for i, (s, e, line) in enumerate(cues, 1)]
    return ["WEBVTT\n\n"] + [f"{timestamp(s, '.')} --> {timestamp(e, '.')}\n{line}\n\n" for s, e, line in cues]


def write_per_input(transcripts: Sequence, out_dir: str, formats: Sequence[str], separator: str = " ",
                    overwrite: bool = False) -> List[str]:
    """OUT_DIR/<name>.<format> for each transcript and format (txt: the text alone). Every target is
    checked before any is written: two inputs of the same name, or an existing file without
    `overwrite`, fail with nothing written."""
    targets = {}
    for t in transcripts:
        stem = os.path.splitext(os.path.basename(t.name))[0] or "audio"
        for fmt in formats:
            path = os.path.join(out_dir, f"{stem}.{fmt}")
            if path in targets:
                raise ASRError(f"{t.name} and {targets[path][0].name} would both write {path}: transcribe them apart")
            refuse_overwrite(path, overwrite)
            targets[path] = (t, fmt)
    os.makedirs(out_dir, exist_ok=True)
    for path, (t, fmt) in targets.items():
        lines = [t.text + "\n"] if fmt == "txt" else format_transcripts([t], fmt, separator)
        write_lines(path, lines, overwrite=True)
    return list(targets)


def write_lines(path: str, lines: Iterable[str], overwrite: bool = False) -> None:
    refuse_overwrite(path, overwrite)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
