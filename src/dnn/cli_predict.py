"""The ``dnn`` commands that use a trained run: predict, translate, generate, transcribe, caption.

Each takes the parsed arguments of its subcommand (:func:`dnn.cli.build_parser`), loads the run's predictor
(a ConfigError naming the run when the run cannot do what the command asks), and prints its results.
"""

from __future__ import annotations

import sys

from dnn.errors import ConfigError

__all__ = ["caption", "generate", "predict", "read_inputs", "run_predictor", "transcribe", "translate"]


def run_predictor(path: str, kind: str, verb: str, device: str = "cpu"):
    """The predictor of the run at ``path``, which must be of ``kind`` (ConfigError naming the run otherwise)."""
    from dnn.run import load_run

    run = load_run(path, device)
    try:
        return run.predictor.require(kind, f"dnn {verb}")
    except ConfigError as err:
        raise ConfigError(f"{run.path}: {err}") from None


def read_inputs(paths: list[str]) -> list[str]:
    """The lines of the files in ``paths``, in order; ``-`` reads standard input."""
    from dnn.data.text import read_lines

    out = []
    for path in paths:
        out += [line.rstrip("\n") for line in sys.stdin] if path == "-" else [r for r in read_lines(path)]
    return out


def predict(args) -> None:
    from dnn.run import load_run

    run = load_run(args.run, args.device)
    predictor = run.predictor
    if predictor.kind in ("image", "video"):
        rows = predictor.predict_files(args.inputs)
    elif predictor.kind in ("classify", "tag"):
        rows = predictor.predict_texts(read_inputs(args.inputs))
    else:
        raise ConfigError(f"{run.path}: `dnn predict` needs an image classification, video classification, text "
                          f"classification or tagging run; this is a {run.cfg.data.task} run")  # fmt: skip
    for row in rows:
        if "tags" in row:
            print(" ".join(f"{t}/{g}" for t, g in zip(row["tokens"], row["tags"])))
        else:
            print(f"{row['input']}\t{row['label']}\t{row['probability']:.3f}")


def translate(args) -> None:

    if args.length_penalty is not None and args.beam_size == 1:
        raise ConfigError("--length-penalty applies to beam search; with --beam-size 1 (greedy) leave it out")
    if args.n_best > args.beam_size:
        raise ConfigError(f"--n-best {args.n_best} needs --beam-size of at least {args.n_best}, got {args.beam_size}")
    predictor = run_predictor(args.run, "translate", "translate", args.device)
    if args.attention and not predictor.has_attention():
        raise ConfigError(f"{args.run}: --attention needs a model with attention; this run's has none "
                          f"(leave out --attention)")  # fmt: skip
    texts = args.texts if args.texts and args.texts != ["-"] else [line.rstrip("\n") for line in sys.stdin]
    length_penalty = 0.6 if args.length_penalty is None else args.length_penalty
    rows = predictor.translate(texts, beam_size=args.beam_size, length_penalty=length_penalty,
                               n_best=args.n_best)  # fmt: skip
    for row in rows:
        if args.n_best > 1:
            if len(rows) > 1:  # several texts: each list under its text
                print(row["source"])
            for rank, alt in enumerate([row, *row.get("alternatives", [])], 1):
                print(f"{rank}\t{alt['score']:.4f}\t{alt['output']}")
        else:
            print(row["output"])
        if args.attention:
            for token, weights in zip(row["output_tokens"], row["attention"]):
                best = max(range(len(weights)), key=weights.__getitem__) if weights else None
                aligned = row["source_tokens"][best] if best is not None else ""
                print(f"  {token!r:>8} ← {aligned!r:<8} " + " ".join(f"{w:.2f}" for w in weights))


def _not_applying(flags: list[str], because: str, instead: str) -> ConfigError:
    """``--top-k applies to sampling; <because> (leave out --top-k, or <instead>)``."""
    names = " and ".join(flags)
    verb = "applies" if len(flags) == 1 else "apply"
    return ConfigError(f"{names} {verb} to sampling; {because} (leave out {names}, or {instead})")


def generate(args) -> None:
    given = {"--temperature": args.temperature, "--top-k": args.top_k, "--top-p": args.top_p, "--seed": args.seed}
    sampling = [flag for flag, value in given.items() if value is not None]
    if args.beam_size > 1 and sampling:
        raise _not_applying(sampling, f"--beam-size {args.beam_size} searches instead", "--beam-size")
    cut = [flag for flag in ("--top-k", "--top-p") if given[flag] is not None]
    if args.temperature == 0 and cut:
        raise _not_applying(cut, "--temperature 0 takes the most likely token", "give a temperature above 0")
    predictor = run_predictor(args.run, "generate", "generate", args.device)
    temperature = 0.8 if args.temperature is None else args.temperature
    print(predictor.generate(args.prompt, args.length, temperature, args.top_k, args.top_p, args.seed or 0,
                             beam_size=args.beam_size))  # fmt: skip


def transcribe(args) -> None:
    predictor = run_predictor(args.run, "transcribe", "transcribe", args.device)
    for row in predictor.transcribe(args.files, beam_size=args.beam_size):
        print(f"{row['file']}\t{row['text']}")


def caption(args) -> None:
    predictor = run_predictor(args.run, "caption", "caption", args.device)
    for row in predictor.caption(args.images, beam_size=args.beam_size):
        print(f"{row['input']}\t{row['caption']}")
        for word, (x, y), weights in zip(row["words"], row["focus"], row["attention"]):
            if args.attention:
                print(f"  {word:<6} at x={x}, y={y} (weight {max(weights):.2f})")
