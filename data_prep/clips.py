"""A test set listed in a table: clips.tsv (tab-separated, a header line naming at least the
columns id, path, lang and text; paths relative to the table's folder), as ../shared/data/clips
ships its 20 English and Mandarin utterances from public test folders.

Every clip goes to the test split: these are for scoring a model on speech it never trained on.
--lang keeps only the clips of one language (en, zh); --corpus-dir is the folder holding the table."""
import csv
import os

from asr.segments import Segment

from .common import CorpusError, Prep, find_root

TABLE = "clips.tsv"
COLUMNS = ("id", "path", "lang", "text")


def add_args(parser) -> None:
    parser.add_argument("--lang", help="keep only the clips of this language (default: all)")


def prepare(prep: Prep) -> None:
    root = find_root(prep.corpus_dir, TABLE)
    table = os.path.join(root, TABLE)
    with open(table, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        missing = [c for c in COLUMNS if c not in (rows.fieldnames or [])]
        if missing:
            raise CorpusError(f"{table}: has no column {', '.join(missing)}")
        for row in rows:
            if prep.options.lang and row["lang"] != prep.options.lang:
                continue
            prep.add("test", Segment(row["id"], os.path.join(root, row["path"]), text=row["text"], lang=row["lang"]))
