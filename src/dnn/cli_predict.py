"""The ``dnn`` commands that use a trained run: predict, translate, generate, transcribe, caption.

All of them go through the predictor contract (:class:`dnn.tasks.base.Predictor`): ``predict`` takes any run and
raw inputs; the named verbs take a run of their kind. Their option flags are made from the predictors' option
schemas (:class:`dnn.tasks.options.Option`), so a flag's type, range and help are written once, where the
predictor declares them; an option the run does not take is one line (``--top-k does not apply to a seq2seq run
(it takes --beam-size, --length-penalty, --n-best)``), never ignored.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dnn.errors import ConfigError
from dnn.tasks.base import MODALITIES, Predictor
from dnn.tasks.options import Option
from dnn.tasks.registry import predictor_classes

__all__ = ["add_commands", "run_predictor"]


def run_predictor(path: str, kind: str | None, verb: str, device: str = "cpu") -> Predictor:
    """The predictor of the run at ``path``, which must be of ``kind`` unless None (ConfigError naming the run)."""
    from dnn.run import load_run

    run = load_run(path, device)
    try:
        return run.predictor if kind is None else run.predictor.require(kind, f"dnn {verb}")
    except ConfigError as err:
        raise ConfigError(f"{run.path}: {err}") from None


def read_lines(paths: list[str]) -> list[str]:
    """The lines of the files in ``paths``, in order; ``-`` reads standard input."""
    from dnn.data.text import read_lines as read

    out = []
    for path in paths:
        out += [line.rstrip("\n") for line in sys.stdin] if path == "-" else [r for r in read(path)]
    return out


# -- flags from the schema ----------------------------------------------------------------------------------------


def _parse(option: Option) -> Callable[[str], Any]:
    """An argparse type for ``option``: the text as the option's type, checked against its range (one line)."""

    def parse(text: str) -> Any:
        try:
            value = option.type(text)
        except ValueError:
            value = text
        try:
            return option.check(value)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{option.flag}: ")) from None

    return parse


def _add_flags(parser: argparse.ArgumentParser, options: Sequence[Option], note: str = "") -> None:
    """One flag per option; a flag not given is absent from the parsed namespace (the predictor's default
    applies, and a rule between options knows what the user set)."""
    for option in options:
        if option.type is bool:
            parser.add_argument(option.flag, action="store_true", default=argparse.SUPPRESS, help=option.help)
            continue
        default = "" if option.default is None else f"default {option.default}; "
        bounds = option.expected()
        parser.add_argument(option.flag, dest=option.name, type=_parse(option), default=argparse.SUPPRESS,
                            metavar=option.type.__name__.upper(),
                            help=f"{option.help} ({default}{bounds}){note}")  # fmt: skip


def _given(args: argparse.Namespace, options: Sequence[Option]) -> dict[str, Any]:
    values = vars(args)
    return {o.name: values[o.name] for o in options if o.name in values}


def _all_options() -> list[Option]:
    """Every predictor's options, one per name (the first declaration's type and range; the defaults differ by run)."""
    seen: dict[str, Option] = {}
    for cls in predictor_classes():
        for option in cls.options:
            seen.setdefault(option.name, option)
    return list(seen.values())


def _options_of(kind: str) -> tuple[Option, ...]:
    return {cls.kind: cls for cls in predictor_classes()}[kind].options


# -- the commands ------------------------------------------------------------------------------------------------


def add_commands(sub, make: Callable[..., argparse.ArgumentParser], device_flag: Callable) -> None:
    """The parsers of predict, translate, generate, transcribe and caption (``make``: the CLI's subcommand maker)."""
    p = make(sub, "predict", "run a trained run on your inputs, whatever its kind: images, clips, audio files, "
             "text files (one example a line) or texts; prints one line per input",
             "dnn predict runs/lenet digit.png\n  dnn predict runs/video clip.gif clip.npy\n  "
             "dnn predict runs/dates dates.txt --beam-size 3")  # fmt: skip
    p.add_argument("run", help="a run directory")
    takes = "; ".join(MODALITIES.values())
    p.add_argument("inputs", nargs="+", help=f"what the run reads: {takes}; for a run that reads texts each "
                   "argument is a text file (a text a line; - reads stdin), or with --text a text")  # fmt: skip
    p.add_argument("--text", action="store_true", help="the inputs are texts, not files of texts")
    _add_flags(p, _all_options(), note=" [runs that take it]")
    device_flag(p)

    t = make(sub, "translate", "translate text with a trained seq2seq run", "dnn translate runs/dates 'March 3, 2021'")
    t.add_argument("run", help="a run directory")
    t.add_argument("texts", nargs="*", help="texts to translate; none or - reads lines from standard input")
    _add_flags(t, _options_of("translate"))
    t.add_argument("--attention", action="store_true", help="also print the attention of every output token")
    device_flag(t)

    g = make(sub, "generate", "write text with a trained language model", "dnn generate runs/charlm --prompt 'def '")
    g.add_argument("run", help="a run directory")
    g.add_argument("--prompt", default="", help="the text to continue")
    _add_flags(g, _options_of("generate"))
    device_flag(g)

    s = make(sub, "transcribe", "transcribe audio files (WAV, FLAC, OGG) with a trained speech run; prints "
             "file<TAB>text", "dnn transcribe runs/speech-digits one.wav two.wav --beam-size 8")  # fmt: skip
    s.add_argument("run", help="a run directory (dnn train speech-digits ...)")
    s.add_argument("files", nargs="+", help="audio files; other sample rates are resampled")
    _add_flags(s, _options_of("transcribe"))
    device_flag(s)

    c = make(sub, "caption", "caption images with a trained captioning run; prints file<TAB>caption",
             "dnn caption runs/caption-digits scene.png --attention")  # fmt: skip
    c.add_argument("run", help="a run directory (dnn train caption-digits ...)")
    c.add_argument("images", nargs="+", help="image files (PNG/JPEG), resized to the run's canvas")
    _add_flags(c, _options_of("caption"))
    c.add_argument("--attention", action="store_true", help="also print where in the image each word looked")
    device_flag(c)


def run_command(args: argparse.Namespace) -> None:
    """Run the parsed predict / translate / generate / transcribe / caption command."""
    if args.command == "predict":
        predictor = run_predictor(args.run, None, "predict", args.device)
        options = predictor.check(_given(args, _all_options()))
        text_files = predictor.modality == "text" and not args.text
        inputs = read_lines(args.inputs) if text_files else args.inputs
        if args.text and predictor.modality != "text":
            raise ConfigError(f"--text applies to runs that read texts; this is {predictor.what}, which reads "
                              f"{predictor.inputs} (leave out --text)")  # fmt: skip
        rows = predictor.predict(inputs, **options)
    elif args.command == "generate":
        predictor = run_predictor(args.run, "generate", "generate", args.device)
        rows = predictor.predict([args.prompt], **predictor.check(_given(args, predictor.options)))
    else:
        kind = {"translate": "translate", "transcribe": "transcribe", "caption": "caption"}[args.command]
        predictor = run_predictor(args.run, kind, args.command, args.device)
        options = predictor.check(_given(args, predictor.options))
        inputs = {"translate": "texts", "transcribe": "files", "caption": "images"}[args.command]
        inputs = vars(args)[inputs]
        if args.command == "translate" and (not inputs or inputs == ["-"]):
            inputs = [line.rstrip("\n") for line in sys.stdin]
        if vars(args).get("attention") and not predictor.has_attention():
            raise ConfigError(f"{args.run}: --attention needs a model with attention; this run's has none "
                              f"(leave out --attention)")  # fmt: skip
        rows = predictor.predict(inputs, **options)
    for row in rows:
        text = predictor.text(row)
        if len(rows) > 1 and "\n" in text:  # several inputs, several lines each (n-best lists): say whose
            print(row["input"])
        print(text)
        if vars(args).get("attention"):
            for line in predictor.attention_lines(row):
                print(line)
