"""Mozilla Common Voice: <lang>/clips/*.mp3 with train.tsv, dev.tsv and test.tsv (columns
client_id, path, sentence and more), the release's own splits; the speaker is the client_id. A
split whose .tsv is missing is left out. Common Voice needs a login to download, so it is never
downloaded: get it from https://commonvoice.mozilla.org/datasets and pass --corpus-dir (the
language folder, or the release folder holding <lang>/)."""
import csv
import os

from asr.segments import Segment

from .common import SPLITS, CorpusError, Prep, find_root

COLUMNS = ("path", "sentence")


def add_args(parser) -> None:
    parser.add_argument("--lang", required=True,
                        help="the release's language code (en, zh-CN, ...), stored with each utterance")


def downloads(options):
    raise CorpusError("Common Voice cannot be downloaded automatically (it needs a login): download it from "
                      "https://commonvoice.mozilla.org/datasets, unpack it and pass --corpus-dir")


def language_folder(top: str, lang: str) -> str:
    """<lang>/ of a release holding several languages, else the one folder with clips/."""
    try:
        return os.path.join(find_root(top, os.path.join(lang, "clips")), lang)
    except CorpusError:
        return find_root(top, "clips")


def prepare(prep: Prep) -> None:
    root = language_folder(prep.corpus_dir, prep.options.lang)
    clips, texts = {}, {}
    for split in SPLITS:
        tsv = os.path.join(root, f"{split}.tsv")
        if not os.path.exists(tsv):
            continue
        with open(tsv, encoding="utf-8", newline="") as f:
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [column for column in COLUMNS if column not in (rows.fieldnames or [])]
            if missing:
                raise CorpusError(f"{tsv}: has no column {', '.join(missing)}")
            for row in rows:
                if not row["path"]:
                    prep.skip("tsv row without a path", f"{tsv}:{rows.line_num}")
                    continue
                uid = os.path.splitext(row["path"])[0]
                clips[uid] = (split, Segment(uid, os.path.join(root, "clips", row["path"]),
                                             speaker=row.get("client_id") or None, lang=prep.options.lang))
                texts[uid] = row["sentence"] or ""
    if not clips:
        raise CorpusError(f"{root}: no train.tsv, dev.tsv or test.tsv")
    prep.add_transcribed(clips, texts)
