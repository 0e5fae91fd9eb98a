"""The ``dnn`` command: thin — parses arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import json
import os
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
    demo.add_argument("--out", default="runs/demo", help="folder for the runs and pictures (default: runs/demo)")
    demo.add_argument("--max-steps", type=int, default=0, help="shorten each training run to N steps (0: full tour)")

    train = _sub(
        sub, "train", "train a recipe or a YAML config into a run directory",
        "dnn train digits-lenet5 train.epochs=5 --run-dir runs/lenet",
    )  # fmt: skip
    train.add_argument("config", nargs="?", help="a recipe name (see `dnn list`) or a YAML file")
    train.add_argument("overrides", nargs="*", help="dotted overrides such as train.lr=3e-4 model.hidden_size=256")
    train.add_argument("--run-dir", help="where the run is written (default: runs/<recipe>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir exactly where it stopped")
    train.add_argument("--quiet", action="store_true", help="print only the final line")
    train.add_argument("--deterministic", action="store_true", help="turn on torch's deterministic algorithms")

    ev = _sub(
        sub, "eval", "evaluate a trained run on its validation and test data, or on a file or folder of yours",
        "dnn eval runs/lenet\n  dnn eval runs/sentiment --data new-reviews.csv",
    )  # fmt: skip
    ev.add_argument("run", help="a run directory")
    ev.add_argument("--data", help="a file or folder in the run's training format to evaluate on instead")

    predict = _sub(
        sub, "predict", "classify or tag inputs with a trained run (images, or text files: one example a line)",
        "dnn predict runs/lenet digit.png",
    )  # fmt: skip
    predict.add_argument("run", help="a run directory")
    predict.add_argument("inputs", nargs="+", help="image files (PNG/JPEG) or text files (- reads standard input)")

    translate = _sub(
        sub, "translate", "translate text with a trained seq2seq run", "dnn translate runs/dates 'March 3, 2021'"
    )
    translate.add_argument("run", help="a run directory")
    translate.add_argument("texts", nargs="*", help="texts to translate; none or - reads lines from standard input")
    translate.add_argument("--beam-size", type=int, default=5, help="beam width (1 = greedy; default 5)")
    translate.add_argument("--attention", action="store_true", help="also print the attention of every output token")

    generate = _sub(
        sub, "generate", "write text with a trained language model", "dnn generate runs/charlm --prompt 'def '"
    )
    generate.add_argument("run", help="a run directory")
    generate.add_argument("--prompt", default="", help="the text to continue")
    generate.add_argument("--length", type=int, default=200, help="tokens to generate (default 200)")
    generate.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    generate.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    generate.add_argument("--top-p", type=float, default=None, help="sample among the most likely tokens up to mass p")
    generate.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")

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


def _predictor(run, method: str, what: str):
    if not hasattr(run.predictor, method):
        from dnn.errors import ConfigError

        raise ConfigError(f"{run.path} is a {run.config['data']['task']} run; `dnn {method}` needs {what}")
    return run.predictor


def _lines(paths: list[str]) -> list[str]:
    from dnn.data.text import read_lines

    out = []
    for path in paths:
        out += [line.rstrip("\n") for line in sys.stdin] if path == "-" else [r for r in read_lines(path)]
    return out


def _predict(args) -> None:
    from dnn.run import load_run

    run = load_run(args.run)
    if hasattr(run.predictor, "predict_files"):
        rows = run.predictor.predict_files(args.inputs)
    else:
        rows = _predictor(run, "predict_texts", "a classification or tagging run").predict_texts(_lines(args.inputs))
    for row in rows:
        if "tags" in row:
            print(" ".join(f"{t}/{g}" for t, g in zip(row["tokens"], row["tags"])))
        else:
            print(f"{row['input']}\t{row['label']}\t{row['probability']:.3f}")


def _translate(args) -> None:
    from dnn.run import load_run

    predictor = _predictor(load_run(args.run), "translate", "a seq2seq run")
    texts = args.texts if args.texts and args.texts != ["-"] else [line.rstrip("\n") for line in sys.stdin]
    for row in predictor.translate(texts, beam_size=args.beam_size):
        print(row["output"])
        if args.attention:
            for token, weights in zip(row["output_tokens"], row["attention"]):
                best = max(range(len(weights)), key=weights.__getitem__) if weights else None
                aligned = row["source_tokens"][best] if best is not None else ""
                print(f"  {token!r:>8} ← {aligned!r:<8} " + " ".join(f"{w:.2f}" for w in weights))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from dnn.demo import run_demo

            run_demo(args.out, args.max_steps)
        elif args.command == "train":
            from dnn.run import train

            if not args.resume and not args.config:
                parser.error("train needs a recipe or a YAML file (see `dnn list`)")
            if args.resume and args.config and "=" in args.config:  # `dnn train --resume --run-dir D` only
                args.overrides.insert(0, args.config)
            config = None if args.resume else args.config
            if args.deterministic and not args.resume:
                args.overrides.append("deterministic=true")
            results = train(config, args.overrides, args.run_dir, args.resume, progress=not args.quiet)
            if args.quiet and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 speaks
                print(json.dumps(results))
        elif args.command == "eval":
            from dnn.run import evaluate_run

            print(json.dumps(evaluate_run(args.run, args.data), indent=2))
        elif args.command == "predict":
            _predict(args)
        elif args.command == "translate":
            _translate(args)
        elif args.command == "generate":
            from dnn.run import load_run

            predictor = _predictor(load_run(args.run), "generate", "a language model run")
            print(predictor.generate(args.prompt, args.length, args.temperature, args.top_k, args.top_p, args.seed))
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
