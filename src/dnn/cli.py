"""The ``dnn`` command: thin — parses arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from dnn import __version__
from dnn.cli_predict import add_commands as add_predict_commands
from dnn.cli_predict import run_command as run_predict_command
from dnn.errors import DnnError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2 like every other user error."""

    def error(self, message: str):
        self.exit(2, f"dnn: error: {message} (see `{self.prog} --help`)\n")


class _CommandParser(_Parser):
    """A subcommand's parser: options, overrides and positionals in any order (``dnn translate RUN --beam-size 3
    'March 3, 2021'``, ``dnn train my.yaml --run-dir runs/mine train.threads=1``), as argparse's intermixed
    parsing reads them."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # the intermixed parse's own two passes
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _sub(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _device_flag(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    from dnn.device import DEVICES, PRECISIONS

    parser.add_argument("--device", default="auto", help=f"where the model runs: {DEVICES} (default: auto)")
    if precision:
        parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 (default), or bf16 / fp16 "
                            "under autocast: faster on matrix units (a CPU's AMX, a GPU's tensor cores), results "
                            "within rounding of fp32 (benchmarks/RESULTS.md)")  # fmt: skip


def _inference_precision(args):
    """The autocast context the command's ``--precision`` asks for (fp32, and commands without it: none)."""
    from dnn.device import autocast, check_precision, resolve_device

    # probe: only the commands that run a model have --precision; the others parse no such flag
    precision = getattr(args, "precision", "fp32")
    if precision == "fp32" or args.command == "serve":  # serve enters it in each worker thread (autocast is per thread)
        return contextlib.nullcontext()
    device = resolve_device(args.device, where="--device")
    check_precision(device, precision, where="--precision")
    return autocast(device, precision)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnn", description="dnn: train, inspect, try and serve the CNNs and RNNs of the lecture.")
    parser.add_argument("--version", action="version", version=f"dnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

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
    _device_flag(ev)

    add_predict_commands(sub, _sub, _device_flag)

    serve = _sub(
        sub, "serve", "serve trained runs: a JSON API and a web page to try them (needs pip install 'dnn[serve]')",
        "dnn serve runs/dates runs/lenet --port 8000   # then open http://127.0.0.1:8000/",
    )  # fmt: skip
    serve.add_argument("runs", nargs="+", metavar="RUN", help="run directories (each served under its folder name)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests "
        "addressed to NAME (its Host header); by default only this server's address and localhost",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("DNN_SERVE_TOKEN"),
        help="require this token (at least 16 "
        "characters) as 'Authorization: Bearer TOKEN'; bound beyond 127.0.0.1, dnn serve makes one if "
        "none is given (default: $DNN_SERVE_TOKEN; a --token is visible to the machine's other users)",
    )
    _device_flag(serve)
    from dnn.serve.limits import ServeLimits

    limits = ServeLimits()
    for flag, kind, default, what in (
        ("--max-body-bytes", int, limits.max_body_bytes, "larger request bodies get 413"),
        ("--max-tokens", int, limits.max_tokens, "most tokens of an input or a generation; more gets 422"),
        ("--max-pixels", int, limits.max_pixels, "largest image in pixels; more gets 422"),
        ("--max-concurrency", int, limits.max_concurrency, "requests at once; more get 429 at once"),
        ("--timeout", float, limits.timeout_s, "seconds a request may run; longer gets 503"),
    ):
        serve.add_argument(flag, type=kind, default=default, help=f"{what} (default {default})")

    inspect = _sub(
        sub, "inspect", "draw a run's pictures again into report.html and figures/ (attention heatmaps, gradient "
        "flow through time, filters, feature maps, confusion matrix, training curves)",
        "dnn inspect runs/dates 'March 3, 2021' 'the 7th of April, 1957' --out pictures/dates",
    )  # fmt: skip
    inspect.add_argument("run", help="a run directory")
    inspect.add_argument("inputs", nargs="*", help="seq2seq runs: sentences (an attention heatmap each); image runs: "
                         "image files (feature maps each); other runs take none")  # fmt: skip
    inspect.add_argument("--out", metavar="DIR", help="where report.html and figures/ go (default: the run itself)")
    _device_flag(inspect, precision=False)

    export = _sub(
        sub, "export", "export a trained run for deployment: ONNX graphs (onnxruntime) or TorchScript, with a "
        "manifest.json and the vocabularies, labels and tokenizers prediction needs. Exported: image, text "
        "classification, tagging, video classification, seq2seq (RNN and Transformer) and captioning runs; refused, "
        "in one line saying why: language-model, speech and regression runs. ONNX needs pip install 'dnn[export]'",
        "dnn export runs/lenet --format onnx\n  dnn export runs/dates --format torchscript --out deploy/dates",
    )  # fmt: skip
    export.add_argument("run", help="a run directory")
    export.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="(default: onnx)")
    export.add_argument("--out", metavar="DIR", help="where the files go (default: RUN/export/FORMAT)")

    _sub(sub, "list", "list the models, recipes and built-in tasks", "dnn list")

    data = _sub(
        sub, "data", "download a public dataset (MNIST, CIFAR-10, IMDB, UD English-EWT, Multi30k, Speech Commands, "
        "tiny Shakespeare) once, SHA-256 verified, laid out for its recipe; or build a parallel corpus from this "
        "machine's gettext catalogues (no download)",
        "dnn data list\n  dnn data get mnist && dnn train mnist-lenet5\n  dnn data path mnist\n"
        "  dnn data gettext fr --out corpus-fr    # English-French pairs translated by people, split 1,000/1,000",
    )  # fmt: skip
    data.add_argument("action", choices=("list", "get", "path", "gettext"),
                      help="list the datasets, get one, print its folder, or build a gettext corpus")  # fmt: skip
    data.add_argument("name", nargs="?", help="a dataset (see `dnn data list`); for gettext, a language (fr, de, …)")
    data.add_argument("--out", metavar="DIR", help="gettext: the folder for train.tsv, valid.tsv and test.tsv")
    data.add_argument("--cache", help="the folder datasets go in (default: $DNN_CACHE or ~/.cache/dnn/datasets)")
    data.add_argument("--mirror", metavar="URL", help="download every file from URL/<file name> instead")
    data.add_argument("--force", action="store_true", help="prepare the dataset again even if it is there")
    data.add_argument("--keep", action="store_true", help="keep the downloaded archives after preparing")

    exp = _sub(
        sub, "experiment", "reproduce a claim of the lecture and measure it: tables, a plot, PASS/FAIL",
        "dnn experiment list\n  dnn experiment adding-problem --quick\n  dnn experiment all",
    )  # fmt: skip
    exp.add_argument("name", help="an experiment (see `dnn experiment list`), `list`, or `all` (every one, in turn)")
    exp.add_argument("--quick", action="store_true", help="a tiny version in seconds: real runs, verdicts n/a")
    exp.add_argument("--out", default="experiments", help="where <name>/results.md and its plot go")
    exp.add_argument("--runs", help="where the training runs go (default: runs/experiments)")
    _device_flag(exp, precision=False)
    return parser


def recipe_summary(text: str) -> str:
    """The first sentence of a recipe's header comment, whole however many lines it spans: up to the first ``.``,
    ``?`` or ``!`` that ends the header or is followed by a capital letter (``et al. 2011`` does not end one)."""
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    words = " ".join(header).split()
    for i, word in enumerate(words):
        if word[-1:] in ".?!" and (i + 1 == len(words) or words[i + 1][:1].isupper()):
            return " ".join(words[: i + 1])
    return " ".join(words)


def _list() -> None:
    from dnn.models.registry import get_model_spec, list_models
    from dnn.run import RECIPES, list_recipes
    from dnn.tasks import get_task, list_tasks

    print("models:")
    for name in list_models():
        print(f"  {name:<22} {get_model_spec(name).summary}")
    print("recipes:")
    for name in list_recipes():
        print(f"  {name:<22} {recipe_summary((RECIPES / f'{name}.yaml').read_text(encoding='utf-8'))}")
    print("tasks (data.task), and the data dnn makes for them (else: your files, data.train=PATH):")
    for name in list_tasks():
        print(f"  {name:<22} {get_task(name).builtin_data.get(name, '-')}")


def _experiment(args) -> None:
    from dnn.experiments import list_experiments, run_experiment

    if args.name == "list":
        for spec in list_experiments():
            print(f"  {spec.name:<22} {spec.claim}")
        return
    names = [spec.name for spec in list_experiments()] if args.name == "all" else [args.name]
    for i, name in enumerate(names):  # the experiments still to come count in each progress line's time left
        result = run_experiment(name, quick=args.quick, out=args.out, runs=args.runs, device=args.device,
                                after=names[i + 1 :])  # fmt: skip
        print(result.markdown())
        print(f"written: {result.results_file}")


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Carry out the parsed command."""
    if args.command == "demo":
        from dnn.demo import run_demo

        run_demo(args.out, args.max_steps)
    elif args.command == "train":
        from dnn.train import train

        if not args.resume and not args.config:
            parser.error("train needs a recipe or a YAML file (see `dnn list`)")
        config = args.config
        if args.resume and config and "=" in config:  # an override where the recipe would be: train() refuses it
            args.overrides.insert(0, config)
            config = None
        if args.deterministic and not args.resume:
            args.overrides.append("deterministic=true")
        results = train(config, args.overrides, args.run_dir, args.resume, progress=not args.quiet)
        if args.quiet and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 speaks
            print(json.dumps(results))
    elif args.command == "eval":
        from dnn.run import evaluate_run

        print(json.dumps(evaluate_run(args.run, args.data, args.device), indent=2))
    elif args.command in ("predict", "translate", "generate", "transcribe", "caption"):
        run_predict_command(args)
    elif args.command == "serve":
        from dnn.serve import ServeLimits, require_serve_extra

        require_serve_extra()
        from dnn.serve.server import serve

        limits = ServeLimits(args.max_body_bytes, args.max_tokens, args.max_pixels, args.max_concurrency,
                             args.timeout)  # fmt: skip
        serve(args.runs, args.host, args.port, limits, args.device, args.precision, args.allow_host, args.token)
    elif args.command == "inspect":
        from dnn.inspect import write_report

        log = lambda line: print(line, file=sys.stderr)  # noqa: E731
        print(write_report(args.run, args.inputs, args.out, log=log, device=args.device))
    elif args.command == "export":
        from dnn.export import export_run

        result = export_run(args.run, args.format, args.out, log=print)
        parity = result.manifest["parity"]
        diff = "n/a" if parity["max_abs_diff"] is None else f"{parity['max_abs_diff']:.2g}"
        print(f"written: {result.files[-1]} (and the files it lists)")
        print(f"max |Δ| against the PyTorch model: {diff} ({parity['checked_with']})")
    elif args.command == "list":
        _list()
    elif args.command == "data" and args.action == "gettext":
        _gettext_corpus(args.name, args.out)
    elif args.command == "data":
        from dnn.data.download import data_command

        data_command(args.action, args.name, args.cache, args.mirror, args.force, args.keep)
    elif args.command == "experiment":
        _experiment(args)
    else:
        parser.print_help()


def _gettext_corpus(language: str | None, out: str | None) -> None:
    from dnn.data.gettext_pairs import write_corpus
    from dnn.errors import ConfigError

    if not language or not out:
        raise ConfigError("dnn data gettext needs a language and --out DIR: dnn data gettext fr --out corpus-fr")
    paths = write_corpus(language, out)
    n = {k: len(p.read_text(encoding="utf-8").splitlines()) for k, p in paths.items()}
    print(f"{n['train']:,} training, {n['valid']:,} validation and {n['test']:,} test pairs in {out}")
    print(f"dnn train translate-tsv data.train={paths['train']} data.valid={paths['valid']} data.test={paths['test']}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _inference_precision(args):
            _run(parser, args)
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
