"""Manifests (one JSON object per line) and the batches a model trains on."""
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, List, Optional

from .errors import ASRError


class ManifestError(ASRError, ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass
class Utterance:
    id: str
    audio: str
    duration: float
    text: str
    speaker: Optional[str] = None
    lang: Optional[str] = None
    offset: Optional[float] = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False)


# Other toolkits' names for our keys (NeMo: audio_filepath/duration/text; WeNet: key/wav/txt).
_ALIASES = {"audio_filepath": "audio", "wav": "audio", "path": "audio", "key": "id", "utt": "id",
            "txt": "text", "spk": "speaker", "language": "lang"}


def parse_manifest_line(line: str, base_dir: str, where: str) -> Utterance:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    entry = {_ALIASES.get(k, k): v for k, v in raw.items()}
    if "audio" not in entry:
        raise ManifestError(f"{where}: missing 'audio' (or 'audio_filepath'/'wav')")
    audio = str(entry["audio"])
    if not os.path.isabs(audio):
        audio = os.path.normpath(os.path.join(base_dir, audio))
    try:
        duration = float(entry["duration"]) if entry.get("duration") is not None else -1.0
        offset = float(entry["offset"]) if entry.get("offset") is not None else None
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: 'duration' and 'offset' must be numbers") from None
    uid = entry.get("id") or os.path.splitext(os.path.basename(audio))[0]
    return Utterance(id=str(uid), audio=audio, duration=duration, text=str(entry.get("text", "")),
                     speaker=entry.get("speaker"), lang=entry.get("lang"), offset=offset)


def read_manifest(path: str) -> Iterator[Utterance]:
    """Streams utterances; relative audio paths are resolved against the manifest's folder."""
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no such manifest file")
    base_dir = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield parse_manifest_line(line, base_dir, f"{path}:{number}")


def write_manifest(path: str, utterances: Iterable[Utterance]) -> int:
    """Writes atomically (temp file + rename) so an interrupted run never leaves a partial manifest."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".jsonl")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for utt in utterances:
                f.write(utt.to_json() + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return count


def load_manifest(path: str) -> List[Utterance]:
    return list(read_manifest(path))
