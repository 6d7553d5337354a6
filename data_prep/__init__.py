"""Corpus recipes: one module per corpus turns that corpus' own layout into train/dev/test manifests.

Each module has a docstring (its `asr prep CORPUS --help`), `prepare(prep)`, and optionally
`add_args(parser)` for its own options and `downloads(options)` for its canonical archives. A
module that makes its own audio sets `NEEDS_CORPUS = False` (no --corpus-dir), one with splits
beyond train/dev/test names them in `EXTRA_SPLITS`, and one that composes or synthesises passes
each utterance's provenance to `prep.add(..., sources=...)` for OUT/<split>.sources.jsonl.
Modules are imported only when used, so that building the `asr` command line stays fast."""

CORPORA = ("aishell", "an4", "clips", "commonvoice", "folder", "fsdd", "fsdd_connected", "kaldi", "librispeech",
           "mandarin", "speechocean762", "synth", "yesno")
