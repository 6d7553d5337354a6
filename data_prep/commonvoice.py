"""Mozilla Common Voice: <lang>/clips/*.mp3 with train.tsv, dev.tsv and test.tsv (columns
client_id, path, sentence and more), the release's own splits; the speaker is the client_id. A
split whose .tsv is missing is left out. Common Voice needs a login to download, so it is never
downloaded: get it from https://commonvoice.mozilla.org/datasets and pass --corpus-dir (the
language folder, or the release folder holding <lang>/). The language stored with each utterance
is the TSVs' locale column, else the language folder's name (cv-corpus-17.0-2024-03-15/en), unless
--lang says otherwise."""
import csv
import os
import re
from typing import Optional

from asr.segments import Segment

from .common import SPLITS, CorpusError, Prep, find_root

COLUMNS = ("path", "sentence")


LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z]{2,8})?")  # Common Voice's folder names: en, zh-CN, rm-sursilv


def add_args(parser) -> None:
    parser.add_argument("--lang", help="the release's language code (en, zh-CN, ...), stored with each utterance "
                                       "(default: the TSVs' locale column, else the language folder's name); "
                                       "in a release folder of several languages, the one to prepare")


def downloads(options):
    raise CorpusError("Common Voice cannot be downloaded automatically (it needs a login): download it from "
                      "https://commonvoice.mozilla.org/datasets, unpack it and pass --corpus-dir")


def language_folder(top: str, lang: Optional[str]) -> str:
    """<lang>/ of a release holding several languages, else the one folder with clips/ (which
    without --lang must be the only language below `top`)."""
    if lang:
        try:
            return os.path.join(find_root(top, os.path.join(lang, "clips")), lang)
        except CorpusError:
            pass
    root = find_root(top, "clips")
    release = os.path.dirname(root)
    if not lang and os.path.abspath(root) != os.path.abspath(top):
        languages = sorted(e.name for e in os.scandir(release) if os.path.isdir(os.path.join(e.path, "clips")))
        if len(languages) > 1:
            raise CorpusError(f"{release}: holds {len(languages)} languages ({', '.join(languages)}): "
                              "pass --lang to choose one, or --corpus-dir its folder")
    return root


def folder_language(root: str) -> Optional[str]:
    """The language a Common Voice language folder is named after (en, zh-CN), if it is."""
    name = os.path.basename(os.path.abspath(root))
    return name if LANGUAGE_CODE.fullmatch(name) else None


def read_rows(prep: Prep, tsv: str, rows: csv.DictReader, split: str, root: str, clips: dict, texts: dict) -> None:
    missing = [column for column in COLUMNS if column not in (rows.fieldnames or [])]
    if missing:
        raise CorpusError(f"{tsv}: has no column {', '.join(missing)}")
    for row in rows:
        if not row["path"]:
            prep.skip("tsv row without a path", f"{tsv}:{rows.line_num}")
            continue
        uid = os.path.splitext(row["path"])[0]
        lang = prep.options.lang or row.get("locale") or folder_language(root)
        if not lang:
            raise CorpusError(f"{tsv}: no locale column, and {os.path.basename(os.path.abspath(root))}/ is not "
                              "named after a language: pass --lang")
        clips[uid] = (split, Segment(uid, os.path.join(root, "clips", row["path"]),
                                     speaker=row.get("client_id") or None, lang=lang))
        texts[uid] = row["sentence"] or ""


def prepare(prep: Prep) -> None:
    root = language_folder(prep.corpus_dir, prep.options.lang)
    clips, texts = {}, {}
    for split in SPLITS:
        tsv = os.path.join(root, f"{split}.tsv")
        if not os.path.exists(tsv):
            continue
        with open(tsv, encoding="utf-8", newline="") as f:
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            try:
                read_rows(prep, tsv, rows, split, root, clips, texts)
            except UnicodeDecodeError as e:
                raise CorpusError(f"{tsv}:{rows.line_num + 1}: not UTF-8 text ({e.reason})") from None
            except csv.Error as e:
                raise CorpusError(f"{tsv}:{rows.line_num}: not a readable .tsv line ({e})") from None
    if not clips:
        raise CorpusError(f"{root}: no train.tsv, dev.tsv or test.tsv")
    prep.add_transcribed(clips, texts)
