"""Transcripts as text: `path<TAB>text` lines, a JSON array, or JSON lines with n-best, scores and
per-token times; written atomically, never over a user's file unless asked to."""
import json
import os
from typing import List, Optional, Sequence

from .errors import ASRError
from .fileio import atomic_output, refuse_overwrite

FORMATS = ("txt", "json", "jsonl")


def output_format(path: Optional[str], fmt: Optional[str]) -> str:
    """The format asked for, else the one the output file's extension names, else txt."""
    fmt = fmt or (os.path.splitext(path)[1].lstrip(".") if path else "txt")
    if fmt not in FORMATS:
        raise ASRError(f"--out {path}: cannot tell the format from its extension; pass --format")
    return fmt


def format_transcripts(transcripts: Sequence, fmt: str) -> List[str]:
    """Lines (each ending in a newline) of `transcripts` (asr.transcribe.Transcript) in `fmt`."""
    if fmt == "txt":
        return [f"{t.name}\t{t.text}\n" for t in transcripts]
    if fmt == "jsonl":
        return [json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in transcripts]
    return [json.dumps([t.to_dict() for t in transcripts], ensure_ascii=False, indent=1) + "\n"]


def write_lines(path: str, lines: Sequence[str], overwrite: bool = False) -> None:
    refuse_overwrite(path, overwrite)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
