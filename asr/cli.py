"""The `asr` command: one subcommand per job; the library below it never imports this module."""
import argparse
import logging
import os
import sys

from .errors import ASRError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="asr", description="Train and run attention-based speech recognisers.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _run, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args) or 0
    except ASRError as e:
        print(f"asr {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML file of TrainConfig fields (see recipes/*/conf)")
    p.add_argument("--train", required=True, help="training manifest (.jsonl)")
    p.add_argument("--valid", required=True, help="validation manifest (.jsonl)")
    p.add_argument("--exp-dir", required=True, help="folder for checkpoints, logs and the final model.pt")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (auto: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue from EXP_DIR/checkpoints/last.pt")
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
    from .config import load_train_config
    from .train import train

    cfg = load_train_config(args.config, args.set)
    existing = os.path.join(args.exp_dir, "checkpoints", "last.pt")
    if os.path.exists(existing) and not args.resume:
        raise ASRError(f"{args.exp_dir} already holds a training run: pass --resume to continue it, "
                       "or choose another --exp-dir")
    _log_to(args.exp_dir)
    path = train(cfg, args.train, args.valid, args.exp_dir, device=_device(args.device), resume=args.resume)
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
    p.add_argument("--out", required=True, help="model file to write")


def _average(args) -> int:
    from .train import average_checkpoints, ranked_checkpoints

    if bool(args.checkpoints) == bool(args.exp_dir):
        raise ASRError("give either checkpoint files or --exp-dir")
    if args.exp_dir:
        args.checkpoints = ranked_checkpoints(args.exp_dir)[: args.best]
    if os.path.abspath(args.out) in {os.path.abspath(c) for c in args.checkpoints}:
        raise ASRError("--out must not be one of the checkpoints being averaged")
    average_checkpoints(args.checkpoints, args.out)
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


# name -> (add arguments to a subparser, run(args) -> exit code, one-line help)
COMMANDS = {
    "train": (_train_args, _train, "train a model from manifests"),
    "average": (_average_args, _average, "average checkpoints into one model file"),
    "prep": (_prep_args, _prep, "write train/dev/test manifests for a corpus, downloading it if needed"),
}

if __name__ == "__main__":
    sys.exit(main())
