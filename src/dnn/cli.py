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
    sub.add_parser("demo", help="a short end-to-end tour of what dnn has")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from dnn.demo import run_demo

            run_demo()
        else:
            parser.print_help()
        return 0
    except DnnError as err:
        print(f"dnn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
