"""The `asr` command: one subcommand per job; the library below it never imports this module."""
import argparse
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


# name -> (add arguments to a subparser, run(args) -> exit code, one-line help)
COMMANDS = {}

if __name__ == "__main__":
    sys.exit(main())
