"""A Kaldi data directory: wav.scp ("recording path", or "recording command |"), text
("utterance words ..."), and optionally segments ("utterance recording start end" in seconds,
end -1 meaning the end of the recording) and utt2spk ("utterance speaker").

--corpus-dir is either one data directory, which becomes the split named by --split (train by
default), or a folder holding data directories named train/, dev/ and test/ (any of them).
Relative paths in wav.scp are taken from --root, the current directory by default as in Kaldi
(many corpora ship wav.scp with paths relative to the corpus' own folder). Commands (lines
ending in "|") are refused unless --allow-pipes is given: then each is run once through the shell
and the WAV it writes to stdout is kept as OUT/audio/<split>/<recording>.wav."""
import os
import subprocess
from typing import Dict, Optional, Tuple

from asr.segments import Segment

from .common import SPLITS, CorpusError, Prep, read_table


def add_args(parser) -> None:
    parser.add_argument("--split", choices=SPLITS, default="train",
                        help="the split a single data directory becomes (default train)")
    parser.add_argument("--allow-pipes", action="store_true",
                        help="run the commands in wav.scp and store the audio they write in OUT/audio/")
    parser.add_argument("--lang", help="language code stored with each utterance, e.g. en or zh")
    parser.add_argument("--root", default=".", metavar="DIR",
                        help="the folder relative paths in wav.scp start from (default: the current directory)")


def data_dirs(prep: Prep) -> Dict[str, str]:
    top = prep.corpus_dir
    if os.path.exists(os.path.join(top, "wav.scp")):
        return {prep.options.split: top}
    found = {split: os.path.join(top, split) for split in SPLITS
             if os.path.exists(os.path.join(top, split, "wav.scp"))}
    if not found:
        raise CorpusError(f"{top}: not a Kaldi data directory (no wav.scp) and has no train/, dev/ or test/ one")
    return found


def run_pipe(prep: Prep, split: str, recording: str, command: str) -> Optional[str]:
    """The audio a wav.scp command writes, stored once (atomically) under OUT/audio/<split>/."""
    path = os.path.join(prep.out_dir, "audio", split, f"{recording}.wav")
    if not os.path.exists(path):
        result = subprocess.run(command, shell=True, capture_output=True)
        if result.returncode != 0 or not result.stdout:
            error = result.stderr.decode(errors="replace").strip().splitlines()
            prep.skip("wav.scp command failed", f"{recording} ({error[-1] if error else f'exit {result.returncode}'})")
            return None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".part", "wb") as f:
            f.write(result.stdout)
        os.replace(path + ".part", path)
    return path


def recording_paths(prep: Prep, folder: str, split: str, root: str, allow_pipes: bool) -> Dict[str, str]:
    """wav.scp's recordings as files: relative paths taken from `root`, commands run when allowed."""
    paths = {}
    for recording, value in read_table(os.path.join(folder, "wav.scp")).items():
        if not value.endswith("|"):
            paths[recording] = os.path.abspath(os.path.join(root, value))
        elif not allow_pipes:
            raise CorpusError(f"{os.path.join(folder, 'wav.scp')}: recording {recording} is a command ({value}); "
                              "pass --allow-pipes to run such commands and keep their audio in OUT/audio/")
        else:
            path = run_pipe(prep, split, recording, value[:-1])
            if path is not None:
                paths[recording] = path
    return paths


def segment_clips(prep: Prep, folder: str, split: str, paths: Dict[str, str], speakers: Dict[str, str],
                  lang: Optional[str]) -> Dict[str, Tuple[str, Segment]]:
    clips, durations = {}, {}
    for utterance, value in read_table(os.path.join(folder, "segments")).items():
        try:
            recording, start, end = value.split()
            start, end = float(start), float(end)
        except ValueError:
            prep.skip("segments line not 'utterance recording start end'", utterance)
            continue
        if recording not in paths:
            prep.skip("segment of a missing recording", utterance)
            continue
        if recording not in durations:
            durations[recording] = prep.duration(paths[recording])
        total = durations[recording]
        if total is None:
            prep.skip("segment of an unreadable recording", utterance)
            continue
        end = total if end < 0 else min(end, total)  # Kaldi's segments often overshoot by a rounding error
        if not 0 <= start < end:
            prep.skip("segment outside its recording", utterance)
            continue
        clips[utterance] = (split, Segment(utterance, paths[recording], end - start, speaker=speakers.get(utterance),
                                            lang=lang, offset=start))
    return clips


def data_dir_segments(prep: Prep, folder: str, split: str, root: str = ".", lang: Optional[str] = None,
                      allow_pipes: bool = False) -> Dict[str, Tuple[str, Segment]]:
    """One data directory's utterances (id -> split and segment, speaker from utt2spk where there
    is one), without their text: pass them with read_table(folder/text) to prep.add_transcribed."""
    paths = recording_paths(prep, folder, split, root, allow_pipes)
    utt2spk = os.path.join(folder, "utt2spk")
    speakers = read_table(utt2spk) if os.path.exists(utt2spk) else {}
    if os.path.exists(os.path.join(folder, "segments")):
        return segment_clips(prep, folder, split, paths, speakers, lang)
    return {recording: (split, Segment(recording, path, speaker=speakers.get(recording), lang=lang))
            for recording, path in paths.items()}


def prepare(prep: Prep) -> None:
    options = prep.options
    for split, folder in data_dirs(prep).items():
        segments = data_dir_segments(prep, folder, split, options.root, options.lang, options.allow_pipes)
        prep.add_transcribed(segments, read_table(os.path.join(folder, "text")))
