"""Corpus recipes: one module per corpus turns that corpus' own layout into train/dev/test manifests.

Each module has a docstring (its `asr prep CORPUS --help`), `prepare(prep)`, and optionally
`add_args(parser)` for its own options and `downloads(options)` for its canonical archives.
Modules are imported only when used, so that building the `asr` command line stays fast."""

CORPORA = ("aishell", "an4", "commonvoice", "folder", "fsdd", "kaldi", "librispeech", "yesno")
