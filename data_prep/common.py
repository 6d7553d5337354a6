"""What every corpus recipe shares: finding, downloading and safely unpacking a corpus, reading
durations from audio headers, and writing the manifests with a summary of what went where."""
import argparse
import hashlib
import importlib
import json
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import soundfile as sf

from asr.audio import AudioError, audio_duration
from asr.errors import ASRError
from asr.fileio import atomic_output
from asr.segments import Segment

SPLITS = ("train", "dev", "test")

# Python's own "data" filter (3.11.4+) re-checks every member as it is written.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class CorpusError(ASRError):
    """A corpus folder, archive or download that cannot be used; the message names it."""


@dataclass
class Download:
    url: str
    checksum: Optional[str] = None  # "md5:<hex>" or "sha256:<hex>"; None where none is published


@dataclass
class Prep:
    """What a corpus module's prepare() works on, and where it collects utterances, the files it
    had to leave out (reason -> names), so that nothing is dropped silently, and, for corpora it
    composes or synthesises, where each utterance's audio came from (id -> JSON-able provenance)."""
    corpus_dir: str  # a folder: an archive given as --corpus-dir has been unpacked by now
    out_dir: str
    download_dir: str
    options: argparse.Namespace
    splits: Dict[str, List[Segment]] = field(default_factory=lambda: {split: [] for split in SPLITS})
    skipped: Dict[str, List[str]] = field(default_factory=dict)
    ids: Set[str] = field(default_factory=set)
    sources: Dict[str, object] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)

    def duration(self, path: str) -> Optional[float]:
        """Seconds, from the file's header; None, and the file counted as skipped, if unusable."""
        try:
            seconds = audio_duration(path)
        except AudioError as e:
            self.skip("unreadable audio", str(e))
            return None
        if seconds <= 0:
            self.skip("no audio samples", path)
            return None
        return seconds

    def add(self, split: str, segment: Segment, sources: object = None) -> None:
        """Adds a segment to a split unless its id is taken, its transcript empty or its audio
        unreadable; the duration is read from the audio header unless the segment gives it.
        `sources`, where given, goes to OUT/<split>.sources.jsonl (manifests keep Segment's keys)."""
        text = " ".join((segment.text or "").split())
        if segment.id in self.ids:
            self.skip("duplicate id", segment.id)
        elif not text:
            self.skip("empty transcript", segment.id)
        else:
            duration = segment.duration if segment.duration >= 0 else self.duration(segment.path)
            if duration is not None:
                self.ids.add(segment.id)
                if sources is not None:
                    self.sources[segment.id] = sources
                self.splits[split].append(replace(segment, path=os.path.abspath(segment.path),
                                                  duration=round(duration, 4), text=text))

    def add_transcribed(self, segments: Dict[str, Tuple[str, Segment]], texts: Dict[str, str]) -> None:
        """Adds the segments (id -> split and segment) that have a transcript in `texts`; the
        others, and transcripts without audio, are counted."""
        for uid in sorted(segments):
            if uid in texts:
                split, segment = segments[uid]
                self.add(split, replace(segment, text=texts[uid]))
            else:
                self.skip("no transcript", uid)
        for uid in sorted(texts.keys() - segments.keys()):
            self.skip("no audio", uid)


def read_lines(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_table(path: str) -> Dict[str, str]:
    """Lines of "key rest of the line" (Kaldi tables, LibriSpeech and AISHELL transcripts)."""
    table = {}
    for line in read_lines(path):
        fields = line.split(maxsplit=1)
        if fields:
            table[fields[0]] = fields[1].strip() if len(fields) > 1 else ""
    return table


def find_root(top: str, marker: str, depth: int = 3) -> str:
    """The folder holding `marker` (a relative path): `top` or a folder up to `depth` levels below
    it, or top's parent when top is the marker's own first folder (LibriSpeech/ itself, say)."""
    top = os.path.abspath(top)
    if os.path.basename(top) == marker.split("/")[0] and os.path.exists(os.path.join(top, "..", marker)):
        return os.path.dirname(top)
    level = [top]
    for _ in range(depth + 1):
        for folder in level:
            if os.path.exists(os.path.join(folder, marker)):
                return folder
        level = [entry.path for folder in level for entry in sorted(os.scandir(folder), key=lambda e: e.name)
                 if entry.is_dir()]
    raise CorpusError(f"{top}: no {marker} in it or below it: is this the right --corpus-dir?")


def checksum_matches(path: str, checksum: str) -> bool:
    algorithm, _, expected = checksum.partition(":")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == expected.lower()


def download(item: Download, folder: str) -> str:
    """Fetches item.url into folder once. Bytes go to a .part file that a later run resumes, and
    only a download that matches its checksum is renamed to the final name."""
    path = os.path.join(folder, os.path.basename(urllib.parse.urlparse(item.url).path))
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    part = path + ".part"
    _fetch(item.url, part)
    if item.checksum is None:
        print(f"warning: {item.url} has no published checksum; {path} is used unverified", file=sys.stderr)
    elif not checksum_matches(part, item.checksum):
        os.remove(part)
        raise CorpusError(f"{item.url}: the download does not match its published {item.checksum} "
                          "(deleted; run again to download it afresh)")
    os.replace(part, path)
    return path


def _fetch(url: str, part: str) -> None:
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    print(f"downloading {url}" + (f" (resuming at {have:,} bytes)" if have else ""), file=sys.stderr)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = have > 0 and response.status == 206  # a server that ignores Range sends it all
            with open(part, "ab" if resumed else "wb") as f:
                start = f.tell()
                shutil.copyfileobj(response, f, 1 << 20)
                received = f.tell() - start
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and received < int(expected):
                # a connection that closes early reads as a short file, not an error: without this check,
                # an unverified download (no published checksum) would be used half-written
                raise CorpusError(f"cannot download {url}: the connection closed after {received:,} of "
                                  f"{int(expected):,} bytes; run again to resume, or download it yourself and "
                                  "pass --corpus-dir")
    except urllib.error.HTTPError as e:
        if e.code != 416:  # 416: nothing left to fetch, the .part file is complete
            raise CorpusError(f"cannot download {url}: {e}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CorpusError(f"cannot download {url}: {e}; run again to resume, or download it yourself "
                          "and pass --corpus-dir") from None


def extract(archive: str, folder: str) -> None:
    """Unpacks a tar archive into folder once (a marker file records a finished extraction, so an
    interrupted one is redone). Every member is checked before anything is written: an archive
    with a member that would land outside folder is refused as a whole."""
    marker = os.path.join(folder, f".{os.path.basename(archive)}.extracted")
    if os.path.exists(marker):
        return
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, folder, archive)
            os.makedirs(folder, exist_ok=True)
            tar.extractall(folder, members, **_TAR_FILTER)
    except tarfile.ReadError:
        raise CorpusError(f"{archive}: not a tar archive, or a damaged one") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CorpusError(f"{archive}: cannot unpack ({e})") from None
    open(marker, "w").close()


def _check_member(member: tarfile.TarInfo, folder: str, archive: str) -> None:
    root = os.path.realpath(folder)

    def inside(path: str) -> bool:
        resolved = os.path.normpath(os.path.join(root, path))
        return not os.path.isabs(path) and (resolved == root or resolved.startswith(root + os.sep))

    if not inside(member.name):
        problem = "would be written outside the target folder"
    elif member.issym() and not inside(os.path.join(os.path.dirname(member.name), member.linkname)):
        problem = f"is a symlink to {member.linkname}, outside the target folder"
    elif member.islnk() and not inside(member.linkname):
        problem = f"is a hard link to {member.linkname}, outside the target folder"
    elif not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        problem = "is a device or pipe"
    else:
        return
    raise CorpusError(f"{archive}: member {member.name!r} {problem}; refusing to unpack it")


def corpus_folder(corpus: str, module, options: argparse.Namespace, download_dir: str) -> str:
    """The corpus as a folder: the one given, the archive given unpacked, or the canonical download."""
    path = options.corpus_dir
    if path is None:
        if not hasattr(module, "downloads"):
            raise CorpusError(f"{corpus} cannot be downloaded: pass --corpus-dir")
        for item in module.downloads(options):
            extract(download(item, download_dir), download_dir)
        return download_dir
    if os.path.isdir(path):
        return path
    if os.path.isfile(path):
        extract(path, download_dir)
        return download_dir
    raise CorpusError(f"{path}: no such file or directory")


def needs_corpus(module) -> bool:
    """False for a module that makes its audio from nothing (NEEDS_CORPUS = False, e.g. synth)."""
    return getattr(module, "NEEDS_CORPUS", True)


def parse_options(corpus: str, module, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"asr prep {corpus}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for train.jsonl, dev.jsonl and test.jsonl")
    if needs_corpus(module):
        parser.add_argument("--corpus-dir", help="the corpus as distributed: its folder or its .tar(.gz) archive; "
                                                 "left out, the corpus is downloaded")
        parser.add_argument("--download-dir", help="where downloads and unpacked archives go (default: OUT/downloads)")
    if hasattr(module, "add_args"):
        module.add_args(parser)
    return parser.parse_args(argv)


def summary(utterances: List[Segment]) -> str:
    hours = sum(u.duration for u in utterances) / 3600
    speakers = len({u.speaker for u in utterances if u.speaker})
    characters = len({c for u in utterances for c in u.text if not c.isspace()})
    return (f"{len(utterances):>9,} utterances {hours:9.3f} h {speakers:>6,} speakers "
            f"{characters:>5,} distinct characters")


def report_skipped(skipped: Dict[str, List[str]]) -> None:
    for reason, names in sorted(skipped.items()):
        shown = ", ".join(names[:3]) + (f", ... ({len(names) - 3:,} more)" if len(names) > 3 else "")
        print(f"skipped {len(names):,} ({reason}): {shown}")


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit WAV of audio that a module made (composed or synthesised), written atomically."""
    with atomic_output(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")


def write_lines(path: str, lines: Sequence[str]) -> bool:
    """Writes the lines atomically or, given none, removes the file that an earlier run left, so
    that a rerun into the same folder never leaves a stale split behind. True if it removed one."""
    if lines:
        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        return False
    stale = os.path.exists(path)
    if stale:
        os.remove(path)
    return stale


def write_splits(prep: Prep) -> None:
    """Writes each split's manifest, and its sources where the module recorded them."""
    width = max(map(len, prep.splits))
    for split, utterances in prep.splits.items():
        path = os.path.join(prep.out_dir, f"{split}.jsonl")
        stale = write_lines(path, [u.to_json() for u in utterances])
        sources = [{"id": u.id, "sources": prep.sources[u.id]} for u in utterances if u.id in prep.sources]
        write_lines(os.path.join(prep.out_dir, f"{split}.sources.jsonl"), [json.dumps(s) for s in sources])
        if utterances:
            print(f"{split:<{width}} {summary(utterances)}  {path}")
        else:
            print(f"{split:<{width}} {'none':>9}" + (f" (removed the old {path})" if stale else ""))


def prepare_corpus(corpus: str, argv: Sequence[str]) -> None:
    """`asr prep CORPUS ARGV...`: the corpus module's prepare(), then the manifests and a summary
    for train/dev/test and any EXTRA_SPLITS the module declares (fsdd_connected's test_long)."""
    module = importlib.import_module(f"data_prep.{corpus}")
    options = parse_options(corpus, module, argv)
    if os.path.exists(options.out) and not os.path.isdir(options.out):
        raise CorpusError(f"{options.out}: exists and is not a folder")
    if needs_corpus(module):
        download_dir = options.download_dir or os.path.join(options.out, "downloads")
        corpus_dir = corpus_folder(corpus, module, options, download_dir)
    else:
        download_dir = corpus_dir = ""
    splits = {split: [] for split in SPLITS + tuple(getattr(module, "EXTRA_SPLITS", ()))}
    prep = Prep(corpus_dir, options.out, download_dir, options, splits)
    module.prepare(prep)
    report_skipped(prep.skipped)
    if not any(prep.splits.values()):
        raise CorpusError(f"{prep.corpus_dir or corpus}: no usable {corpus} utterances found")
    write_splits(prep)
