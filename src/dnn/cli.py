"""The ``dnn`` command: thin — parses arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import sys

from dnn import __version__
from dnn.errors import DnnError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="a short end-to-end tour of what dnn has, with the lecture's claims measured")
    demo.add_argument("--out", default="runs/demo", help="folder for the pictures (default: runs/demo)")
    demo.add_argument("--steps", type=int, default=1500, help="training steps of the adding problem (default: 1500)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from dnn.demo import run_demo

            run_demo(args.out, args.steps)
        else:
            parser.print_help()
        return 0
    except DnnError as err:
        print(f"dnn: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dnn demo | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("dnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
