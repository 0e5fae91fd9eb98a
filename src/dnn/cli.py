"""The ``dnn`` command: thin — parses arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import json
import sys

from dnn import __version__
from dnn.errors import DnnError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2 like every other user error."""

    def error(self, message: str):
        self.exit(2, f"dnn: error: {message} (see `{self.prog} --help`)\n")


def _sub(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = _sub(sub, "demo", "a short end-to-end tour of what dnn has, with the lecture's claims measured", "dnn demo")
    demo.add_argument("--out", default="runs/demo", help="folder for the pictures (default: runs/demo)")
    demo.add_argument("--steps", type=int, default=1500, help="training steps of the adding problem (default: 1500)")

    train = _sub(
        sub, "train", "train a recipe or a YAML config into a run directory",
        "dnn train digits-lenet5 train.epochs=5 --run-dir runs/lenet",
    )  # fmt: skip
    train.add_argument("config", nargs="?", help="a recipe name (see `dnn list`) or a YAML file")
    train.add_argument("overrides", nargs="*", help="dotted overrides such as train.lr=3e-4 model.hidden_size=256")
    train.add_argument("--run-dir", help="where the run is written (default: runs/<recipe>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir exactly where it stopped")
    train.add_argument("--quiet", action="store_true", help="print only the final line")

    ev = _sub(sub, "eval", "evaluate a trained run on its validation and test data", "dnn eval runs/lenet")
    ev.add_argument("run", help="a run directory")

    predict = _sub(sub, "predict", "classify input files with a trained run", "dnn predict runs/lenet digit.png")
    predict.add_argument("run", help="a run directory")
    predict.add_argument("inputs", nargs="+", help="image files (PNG/JPEG)")

    _sub(sub, "list", "list the models, recipes and built-in tasks", "dnn list")
    return parser


def _list() -> None:
    from dnn.data.text_tasks import list_tasks
    from dnn.models.registry import get_model_spec, list_models
    from dnn.run import RECIPES, list_recipes

    print("models:")
    for name in list_models():
        print(f"  {name:<22} {get_model_spec(name).summary}")
    print("recipes:")
    for name in list_recipes():
        first = (RECIPES / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        print(f"  {name:<22} {first}")
    print("built-in tasks:")
    print("  " + ", ".join(["digits", "adding", "pydoc", *list_tasks()]))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from dnn.demo import run_demo

            run_demo(args.out, args.steps)
        elif args.command == "train":
            from dnn.run import train

            if not args.resume and not args.config:
                parser.error("train needs a recipe or a YAML file (see `dnn list`)")
            if args.resume and args.config and "=" in args.config:  # `dnn train --resume --run-dir D` only
                args.overrides.insert(0, args.config)
            config = None if args.resume else args.config
            results = train(config, args.overrides, args.run_dir, args.resume, progress=not args.quiet)
            if args.quiet:
                print(json.dumps(results))
        elif args.command == "eval":
            from dnn.run import evaluate_run

            print(json.dumps(evaluate_run(args.run), indent=2))
        elif args.command == "predict":
            from dnn.run import load_run

            run = load_run(args.run)
            for row in run.predictor.predict_files(args.inputs):
                print(f"{row['input']}\t{row['label']}\t{row['probability']:.3f}")
        elif args.command == "list":
            _list()
        else:
            parser.print_help()
        return 0
    except DnnError as err:
        print(f"dnn: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dnn list | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("dnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
