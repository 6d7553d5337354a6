"""The `asr` command: one subcommand per job. It sits above the library (`asr`) and the corpus
recipes (`data_prep`) and knows both; neither knows it."""
import argparse
import logging
import os
import sys
import traceback

from asr.errors import ASRError

from .flags import add_dataclass_flags, given_values


def main(argv=None) -> int:
    from asr import __version__

    parser = argparse.ArgumentParser(prog="asr", description="Train and run attention-based speech recognisers.")
    parser.add_argument("--version", action="version", version=f"asr {__version__} (distribution attend-asr)")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print Python's full traceback as well as the one-line message")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _run, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args) or 0
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line, whatever went wrong; the traceback only when asked for
        if args.debug:
            if e.__suppress_context__ and e.__context__ is not None:  # what `raise ... from None` hid
                traceback.print_exception(e.__context__)
                print("\nwhich was reported as:\n", file=sys.stderr)
            traceback.print_exc()
        print(f"asr {args.command}: {_one_line(e, args.command)}", file=sys.stderr)
        return 1


def _one_line(error: Exception, command: str) -> str:
    """An error as one line: ours (bad input) as it is; the system's (a file that cannot be written,
    a full disk) with the file it names; anything else is a bug, named by its type."""
    if isinstance(error, ASRError):
        return "error: " + " ".join(str(error).split())
    if isinstance(error, OSError) and error.strerror:
        return f"error: {error.filename + ': ' if error.filename else ''}{error.strerror}"
    detail = " ".join(str(error).split())[:200]
    return (f"internal error: {type(error).__name__}{': ' + detail if detail else ''} "
            f"(run 'asr --debug {command} ...' for the traceback, and please report it)")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML file of TrainConfig fields (see recipes/*/conf)")
    p.add_argument("--train", nargs="+", metavar="MANIFEST",
                   help="training manifests (.jsonl), one per corpus: one vocabulary over all; per-corpus "
                        "sampling with --set train_weights=[1,0.5] (default: the config's train list)")
    p.add_argument("--valid", nargs="+", metavar="MANIFEST",
                   help="validation manifests, each reported on its own (default: the config's valid list)")
    p.add_argument("--exp-dir", required=True, help="folder for checkpoints, logs and the final model.pt")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (auto: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue from EXP_DIR/checkpoints/last.pt")
    p.add_argument("--init-from", metavar="MODEL", help="fine-tune this model file (its sizes, vocabulary, weights and "
                                                        "feature statistics; the config's model: entries on top)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config entries, e.g. epochs=5 model.d_model=128")


def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ASRError(f"--device {name}: CUDA is not available on this machine")
    return name


def _train(args) -> int:
    from asr.config import load_train_config
    from asr.train import train

    cfg = load_train_config(args.config, args.set)
    existing = os.path.join(args.exp_dir, "checkpoints", "last.pt")
    if os.path.exists(existing) and not args.resume:
        raise ASRError(f"{args.exp_dir} already holds a training run: pass --resume to continue it, "
                       "or choose another --exp-dir")
    _log_to(args.exp_dir)
    path = train(cfg, args.train, args.valid, args.exp_dir, device=_device(args.device), resume=args.resume,
                 init_from=args.init_from)
    if path is None:
        return 130
    print(path)
    return 0


def _log_to(exp_dir: str) -> None:
    os.makedirs(exp_dir, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        handlers=[logging.FileHandler(os.path.join(exp_dir, "train.log")), logging.StreamHandler()])


def _average_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="*", help="checkpoint files to average")
    p.add_argument("--exp-dir", help="average the best --best checkpoints of this training run instead")
    p.add_argument("--best", type=int, default=5, help="how many of the best checkpoints (with --exp-dir)")
    p.add_argument("--rank-by", choices=("cer", "acc"), default="cer",
                   help="best by validation CER or by token accuracy (default %(default)s)")
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _average(args) -> int:
    from asr.checkpoint import average_checkpoints, ranked_checkpoints
    from asr.fileio import refuse_overwrite

    if bool(args.checkpoints) == bool(args.exp_dir):
        raise ASRError("give either checkpoint files or --exp-dir")
    if args.exp_dir:
        args.checkpoints = ranked_checkpoints(args.exp_dir, args.rank_by)[: args.best]
    if os.path.abspath(args.out) in {os.path.abspath(c) for c in args.checkpoints}:
        raise ASRError("--out must not be one of the checkpoints being averaged")
    refuse_overwrite(args.out, args.overwrite)  # e.g. checkpoints/last.pt, which a resume needs
    average_checkpoints(args.checkpoints, args.out)
    print(args.out)
    return 0


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (EXP_DIR/model.pt)")
    p.add_argument("--json", action="store_true", help="print the card as JSON")


def _info(args) -> int:
    import json

    from asr.checkpoint import model_card

    card = model_card(args.model)
    if args.json:
        print(json.dumps(card, indent=1, ensure_ascii=False))
        return 0
    m = card["model"]
    lines = [card["file"], f"  trained with asr {card['trained_with']}",
             f"  model: {m['arch']}, {m['parameters'] / 1e6:.2f} M parameters, d_model {m['d_model']}, "
             f"{m['encoder_layers']} + {m['decoder_layers']} blocks, subsampling {m['subsampling']}, "
             f"{m['vocabulary']} tokens; lang {card['lang']} (numerals: {card['numerals']})"]
    lines += [f"  trained on {c['manifest']}: {c['utterances']:,} utterances, {c['hours']:.2f} h" for c in card["corpora"]]
    if card["epochs"] is not None:
        lines.append(f"  {card['epochs']} epochs, {card['steps']:,} steps; weights averaged from {', '.join(card['averaged']) or 'one checkpoint'}")
    if card["dev"]:
        lines.append("  best dev epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in card["dev"].items()))
    lines.append("  recommended decoding: " + (", ".join(f"{k}={v}" for k, v in card["decoding"].items()) or "the defaults"))
    lines += [f"  {name}: CER {100 * e['cer']:.2f}%, WER {100 * e['wer']:.2f}% on {e['utterances']:,} utterances "
              f"({e['manifest']})" for name, e in card["evaluations"].items() if e["cer"] is not None]
    print("\n".join(lines))
    return 0


def _heads_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model file (EXP_DIR/model.pt)")
    p.add_argument("--manifest", required=True, help="dev manifest (.jsonl) with reference texts")
    p.add_argument("--out", help="model file to write, with the heads chosen and their scores in its info")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file, or without --out, --model")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (auto: cuda when available)")


def _heads(args) -> int:
    from asr.checkpoint import load_model_file, model_file
    from asr.data import SpeechDataset
    from asr.fileio import atomic_save, refuse_overwrite
    from asr.heads import describe_heads, find_alignment_heads
    from asr.inputs import manifest_segments

    if not args.out and not args.overwrite:
        raise ASRError("give --out FILE, or --overwrite to replace --model")
    out = args.out or args.model
    refuse_overwrite(out, args.overwrite)
    loaded = load_model_file(args.model, _device(args.device))
    dataset = SpeechDataset(manifest_segments(args.manifest), loaded.tokenizer, loaded.lang)
    found = find_alignment_heads(loaded.model, dataset)
    if not found["utterances"]:
        raise ASRError(f"{args.manifest}: no utterance has a reference text that the model's CTC head can align")
    print(describe_heads(found), file=sys.stderr)
    info = {**loaded.info, "alignment_heads": dict(found, manifest=os.path.abspath(args.manifest))}
    atomic_save(model_file(loaded.model, loaded.tokenizer.tokens, loaded.lang, info), out)
    print(out)
    return 0


def _train_lm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the recogniser (EXP_DIR/model.pt) whose vocabulary the LM spells with")
    p.add_argument("--text", nargs="+", required=True, metavar="FILE",
                   help="training text: manifests (.jsonl, their transcripts) or text files (one sentence a line)")
    p.add_argument("--valid-text", nargs="+", required=True, metavar="FILE",
                   help="held-out text (e.g. the dev manifest), for perplexity and choosing the best epoch")
    p.add_argument("--out", required=True, help="language model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--config", help="YAML file of LMTrainConfig fields (asr/train_lm.py; default: its defaults)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config entries, e.g. epochs=10 lm.hidden=256")


def _train_lm(args) -> int:
    from asr.fileio import refuse_overwrite
    from asr.train_lm import lm_train_config, read_texts, train_lm, vocabulary_of

    refuse_overwrite(args.out, args.overwrite)
    cfg = lm_train_config(args.set, args.config)
    tokenizer, lang, numerals = vocabulary_of(args.model)
    train_texts = [t for path in args.text for t in read_texts(path, lang, numerals)]
    valid_texts = [t for path in args.valid_text for t in read_texts(path, lang, numerals)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    info = train_lm(cfg, train_texts, valid_texts, tokenizer, args.out,
                    info=dict(text=[os.path.abspath(p) for p in args.text], model=os.path.abspath(args.model)))
    unknown = sum(info["unknown_characters"].values())
    print(f"{info['train_sentences']:,} sentences ({info['train_characters']:,} characters"
          f"{f', {unknown:,} outside the vocabulary' if unknown else ''}); held-out perplexity "
          f"{info['valid_perplexity']:.3f} per character", file=sys.stderr)
    print(args.out)
    return 0


def _prep_args(p: argparse.ArgumentParser) -> None:
    from data_prep import CORPORA

    p.add_argument("corpus", choices=CORPORA, help="the corpus; 'asr prep CORPUS --help' lists its layout and options")
    p.add_argument("options", nargs=argparse.REMAINDER, help="--corpus-dir DIR --out OUT [corpus options]")


def _prep(args) -> int:
    from data_prep.common import prepare_corpus

    prepare_corpus(args.corpus, args.options)
    return 0


def _decoding_args(p: argparse.ArgumentParser) -> None:
    from asr.decode import DecodingOptions
    from asr.config import BATCH_SECONDS

    add_dataclass_flags(p, DecodingOptions, "decoding", ", or what the model file recommends")
    p.add_argument("--lm", metavar="LM_FILE",
                   help="character language model (asr train-lm) fused into beam search with weight --lm-weight")
    p.add_argument("--batch-seconds", type=float, default=BATCH_SECONDS,
                   help="padded audio per batch (default %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (auto: cuda when available)")


def _recognizer_and_options(args):
    """The model, and its recommended decoding options with the flags given on top."""
    from asr.decode import DecodingOptions
    from asr.transcribe import Recognizer

    recognizer = Recognizer.load(args.model, _device(args.device), args.lm)
    return recognizer, recognizer.options(**given_values(args, DecodingOptions))


def _transcribe_args(p: argparse.ArgumentParser) -> None:
    from asr.writers import FORMATS, PER_INPUT_FORMATS

    p.add_argument("inputs", nargs="+", metavar="AUDIO",
                   help="audio files, folders (searched recursively) or manifests (.jsonl)")
    p.add_argument("--model", required=True, help="model file (EXP_DIR/model.pt)")
    p.add_argument("--out", help="write results here instead of printing 'path<TAB>text' lines")
    p.add_argument("--format", choices=FORMATS,
                   help="format of --out (default: from its extension, else txt); json(l) has n-best, scores, "
                        "per-token and per-word times; srt and vtt are subtitles of one audio file, tsv its cues")
    p.add_argument("--output-dir", help="also write one file per input here, OUTPUT_DIR/<name>.<format>, as Whisper does")
    p.add_argument("--output-format", choices=PER_INPUT_FORMATS + ("jsonl", "all"), default="txt",
                   help=f"format of the --output-dir files (txt: the text alone; all: {', '.join(PER_INPUT_FORMATS)}; "
                        "default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out or --output-dir files")
    _decoding_args(p)


def _transcribe(args) -> int:
    from asr.fileio import refuse_overwrite
    from asr.inputs import MANIFEST_EXTENSIONS
    from asr.text import word_separator
    from asr.transcribe import Timing
    from asr.writers import (LINE_FORMATS, PER_INPUT_FORMATS, SUBTITLES, format_transcripts, output_format, write_lines,
                             write_per_input)

    fmt = output_format(args.out, args.format)
    if fmt in SUBTITLES and (len(args.inputs) > 1 or os.path.isdir(args.inputs[0])
                             or args.inputs[0].lower().endswith(MANIFEST_EXTENSIONS)):
        raise ASRError(f"{fmt} subtitles are of one audio file; for several, transcribe them one at a time "
                       "or write json")
    if args.out:
        refuse_overwrite(args.out, args.overwrite)
    recognizer, options = _recognizer_and_options(args)
    failed = []

    def report(message: str) -> None:
        failed.append(message)
        print(f"asr transcribe: skipped {message}", file=sys.stderr)

    timing, separator = Timing(), word_separator(recognizer.lang)
    stream = recognizer.stream(args.inputs, options, batch_seconds=args.batch_seconds, progress=True,
                               on_error=report, timing=timing)
    count = 0

    def lines_as_they_come():  # flat memory for any number of inputs
        nonlocal count
        for transcript in stream:
            count += 1
            yield from format_transcripts([transcript], fmt, separator)

    if fmt in LINE_FORMATS and not args.output_dir:
        lines = lines_as_they_come()
    else:  # a whole document, or files per input
        transcripts = list(stream)
        count = len(transcripts)
        lines = format_transcripts(transcripts, fmt, separator)
        if args.output_dir:
            formats = PER_INPUT_FORMATS if args.output_format == "all" else (args.output_format,)
            written = write_per_input(transcripts, args.output_dir, formats, separator, args.overwrite)
            print(f"{len(written)} files -> {args.output_dir}", file=sys.stderr)
    if args.out:
        write_lines(args.out, lines, overwrite=True)
        print(f"{count} transcripts -> {args.out}", file=sys.stderr)
    elif not args.output_dir:
        sys.stdout.writelines(lines)
    if not count:
        if len(failed) == 1:  # the one input's own line has said why
            return 1
        raise ASRError("nothing could be read: no transcripts")
    print(f"{timing.audio_seconds:.1f} s of audio, real-time factor {timing.rtf:.4f}", file=sys.stderr)
    return 1 if failed else 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    from asr.serve import ServeOptions

    p.add_argument("--model", required=True, help="model file (EXP_DIR/model.pt)")
    add_dataclass_flags(p, ServeOptions, "serving")
    _decoding_args(p)


def _serve(args) -> int:
    from asr.serve import ServeOptions, serve

    recognizer, options = _recognizer_and_options(args)
    serve(recognizer, options, ServeOptions(**given_values(args, ServeOptions)), args.model, args.batch_seconds)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model file (EXP_DIR/model.pt)")
    p.add_argument("--manifest", required=True, help="test manifest (.jsonl) with reference texts")
    p.add_argument("--out", required=True, help="folder for summary.json, results.jsonl and attention plots")
    p.add_argument("--plots", type=int, default=3, help="attention-alignment PNGs for the first N utterances")
    p.add_argument("--group-by", nargs="+", default=[], metavar="KEY",
                   help="also score each value of these manifest keys apart (e.g. speaker, gender, age_group)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
    p.add_argument("--record", action="store_true",
                   help="also keep this evaluation's CER and WER in the model file's card (asr info shows it), "
                        "under the name of the --out folder")
    _decoding_args(p)


def _evaluate(args) -> int:
    from asr.evaluate import evaluate, format_summary
    from asr.fileio import refuse_overwrite

    refuse_overwrite(os.path.join(args.out, "summary.json"), args.overwrite)
    recognizer, options = _recognizer_and_options(args)
    summary = evaluate(recognizer, args.manifest, args.out, options, batch_seconds=args.batch_seconds,
                       plots=max(0, args.plots), progress=True, group_by=args.group_by)
    print(format_summary(summary))
    print(os.path.join(args.out, "summary.json"))
    if args.record:
        from asr.checkpoint import record_evaluation

        record_evaluation(args.model, os.path.basename(os.path.normpath(args.out)), summary)
        print(f"recorded in {args.model}", file=sys.stderr)
    return 0


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", help="reference text file")
    p.add_argument("hyp", help="hypothesis text file")
    p.add_argument("--ids", action="store_true",
                   help="lines are 'ID text' (Kaldi style) and are matched by ID; default: matched by line number")
    p.add_argument("--lang", default="en", help="normalisation applied to both (en, zh; default %(default)s)")
    p.add_argument("--no-normalize", action="store_true", help="score the texts exactly as written")


def _score(args) -> int:
    from asr.metrics import character_errors, mixed_errors, word_errors
    from asr.text import normalize_text, writes_without_spaces

    refs, hyps = _read_texts(args.ref, args.ids), _read_texts(args.hyp, args.ids)
    if args.ids:
        missing = sorted(refs.keys() - hyps.keys())
        if missing:
            raise ASRError(f"{args.hyp}: no hypothesis for {len(missing)} reference ids, e.g. {missing[0]}")
        keys = sorted(refs)
    else:
        if len(refs) != len(hyps):
            raise ASRError(f"{args.ref} has {len(refs)} lines but {args.hyp} has {len(hyps)}")
        keys = list(refs)
    clean = (lambda t: " ".join(t.split())) if args.no_normalize else (lambda t: normalize_text(t, args.lang))
    ref_texts, hyp_texts = [clean(refs[k]) for k in keys], [clean(hyps[k]) for k in keys]
    rates = [("CER", character_errors), ("WER", word_errors)] + [("MER", mixed_errors)] * writes_without_spaces(args.lang)
    for name, counts in ((name, rate(ref_texts, hyp_texts)) for name, rate in rates):
        print(f"{name} {100 * counts.rate:.2f}% (S {counts.substitutions}, D {counts.deletions}, "
              f"I {counts.insertions} of {counts.reference_length})")
    print(f"{len(keys)} utterances")
    return 0


def _read_texts(path: str, with_ids: bool) -> dict:
    """Line number (or ID) -> text."""
    from asr.fileio import read_text_lines

    lines = read_text_lines(path)
    if not with_ids:
        return dict(enumerate(lines))
    texts = {}
    for number, line in enumerate(lines, 1):
        if line.strip():
            key, _, text = line.strip().partition(" ")
            if key in texts:
                raise ASRError(f"{path}:{number}: id {key} appears twice")
            texts[key] = text
    return texts


# name -> (add arguments to a subparser, run(args) -> exit code, one-line help)
COMMANDS = {
    "train": (_train_args, _train, "train a model from manifests"),
    "average": (_average_args, _average, "average checkpoints into one model file"),
    "heads": (_heads_args, _heads, "choose a model's alignment heads (the cross-attention heads that follow "
                                   "the audio) on dev data"),
    "train-lm": (_train_lm_args, _train_lm, "train a character language model on text, for beam search fusion"),
    "prep": (_prep_args, _prep, "write train/dev/test manifests for a corpus, downloading it if needed"),
    "transcribe": (_transcribe_args, _transcribe, "transcribe audio files, folders or manifests"),
    "evaluate": (_evaluate_args, _evaluate, "decode a test manifest and score CER/WER"),
    "score": (_score_args, _score, "CER/WER of a hypothesis text file against a reference"),
    "serve": (_serve_args, _serve, "serve a model over HTTP: OpenAI's /v1/audio/transcriptions API, batched, "
                                   "and a web page"),
    "info": (_info_args, _info, "print a model file's card: model, training data, dev results, recommended "
                                "decoding, and the evaluations beside it"),
}
