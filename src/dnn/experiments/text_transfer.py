"""Self-supervised pretraining, then transfer, for text: ``text-transfer`` (ULMFiT, Howard & Ruder 2018).

A word-level LSTM language model learns to predict the next word of an unlabelled corpus far larger than the
labelled set — the docstrings and documentation of the Python packages installed with dnn and of the standard
library (:mod:`dnn.experiments.corpus`, ~4.4M words), with the pydoc help text's held-out paragraphs kept out —
plus the target task's own text (Python's help topics, ``pydoc_data.topics``, minus those held-out paragraphs), as
ULMFiT's language model reads the target task's text after Wikipedia. Its embedding and LSTM layers then start a
classifier of the topics' paragraphs by topic group (statements, expressions, types, datamodel:
:mod:`dnn.data.pydoc_topics`), fine-tuned with discriminative learning rates and gradual unfreezing; the same
classifier trained from scratch on the same labelled paragraphs is the baseline, at 10, 50 and 200 labelled
paragraphs per class.

The validation and test paragraphs are drawn once (as a benchmark's test set is fixed) and kept out of the
language model's text; each seed draws its own labelled training sample from the rest and its own initialisation.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import sysconfig
from pathlib import Path

from dnn.data.corpus import pydoc_text
from dnn.data.pydoc_topics import GROUPS, pydoc_paragraphs, write_csv
from dnn.experiments.base import Check, Context, Run, Table, figure, save_figure, spread
from dnn.experiments.corpus import SHINGLE, build_corpus
from dnn.experiments.protocol import Protocol, Row
from dnn.experiments.registry import experiment
from dnn.rundir import MODEL, as_run

LM_RECIPE, CLF_RECIPE = "lm-pydoc-words", "pydoc-topics-ulmfit"
SIZES = (10, 50, 200)  # labelled training paragraphs per class; the smallest group (expressions) has 295
VALID, TEST = 20, 60  # held-out paragraphs per class, drawn once, before any training pool
HELD_OUT_DRAW = "text-transfer held-out paragraphs"  # the seed of that one draw
MIN_STEPS, MIN_EPOCHS = 200, 8  # the update budget of every classifier run (8 epochs: 4 of gradual unfreezing)
BATCH = 16
CHANCE = 1 / len(GROUPS)
LM_VOCAB, LM_EPOCHS = 20_000, 2  # the language model: its vocabulary (most frequent words) and its passes
LM_FULL = [f"data.vocab_size={LM_VOCAB}", f"train.epochs={LM_EPOCHS}", "train.max_steps=0"]
LM_QUICK = ["train.max_steps=10", "model.hidden_size=32", "model.embedding_size=32", "data.vocab_size=2000"]
QUICK_CORPUS = {"packages": ("json", "email", "textwrap"), "max_words": 20_000}  # standard-library modules
SCRATCH = [
    "train.init_from=null",
    "train.gradual_unfreeze=false",
    "model.embedding_size=128",
    "model.hidden_size=128",
    "model.num_layers=2",
]  # fmt: skip — the LM's shape, its own vocabulary


def _held_out() -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """(valid, test, pool) paragraphs by group: valid and test drawn once, the pool what the seeds sample from."""
    by_group: dict[str, list[str]] = {}
    for text, group in pydoc_paragraphs():
        by_group.setdefault(group, []).append(text)
    rng = random.Random(HELD_OUT_DRAW)
    valid, test, pool = {}, {}, {}
    for group, texts in by_group.items():
        texts = texts[:]
        rng.shuffle(texts)
        valid[group], test[group], pool[group] = texts[:VALID], texts[VALID : VALID + TEST], texts[VALID + TEST :]
    return valid, test, pool


def _splits(ctx: Context, seed: int, sizes: tuple[int, ...]) -> dict[str, str]:
    """CSV files of one seed: the fixed valid and test sets, and one training file per size (nested: 10 ⊂ 50 ⊂
    200, by class) drawn by the seed from the pool."""
    valid, test, pool = _held_out()
    rng = random.Random(seed)
    parts: dict[str, list[tuple[str, str]]] = {"valid": [], "test": [], **{f"train{n}": [] for n in sizes}}
    for group in pool:
        texts = pool[group][:]
        rng.shuffle(texts)
        parts["valid"] += [(t, group) for t in valid[group]]
        parts["test"] += [(t, group) for t in test[group]]
        for n in sizes:
            parts[f"train{n}"] += [(t, group) for t in texts[:n]]
    folder = ctx.runs / "data" / f"s{seed}"
    return {name: str(write_csv(rows, folder / f"{name}.csv")) for name, rows in parts.items()}


def _target_text() -> str:
    """The pydoc help text without the held-out paragraphs, nor any block sharing ``SHINGLE`` words in a row with
    one (the topics repeat some sentences): the target task's unlabelled text, as ULMFiT's LM reads it."""
    valid, test, _ = _held_out()
    held = [p.lower() for group in (valid, test) for texts in group.values() for p in texts]
    word = re.compile(r"\w+")

    def shingles(text: str) -> set[tuple[str, ...]]:
        words = word.findall(text)
        return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}

    banned = set().union(*(shingles(p) for p in held))
    blocks = re.split(r"\n\s*\n", pydoc_text())
    return "\n".join(" ".join(b.split()) for b in blocks if b.split() and not banned & shingles(b.lower()))


def _corpus(ctx: Context) -> dict[str, int | str]:
    """The language model's text in ``runs/…/corpus``: the installed packages' docstrings and documentation (the
    pydoc text kept out), then the target text; quick: a few standard-library modules."""
    roots, limits = None, {}
    if ctx.quick:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        roots = [stdlib / name for name in QUICK_CORPUS["packages"] if (stdlib / name).is_dir()] or [stdlib / "json"]
        limits = {"max_words": QUICK_CORPUS["max_words"]}
    stats = build_corpus(ctx.runs / "corpus", keep_out=pydoc_text(), roots=roots, extra_train=_target_text(), **limits)
    ctx.log(f"  corpus: {stats['words']:,} words ({stats['extra_words']:,} of them the target text), "
            f"{stats['paragraphs']:,} paragraphs, sha256 {str(stats['sha256'])[:12]}")  # fmt: skip
    return stats


PROTOCOL = Protocol(
    paper="Howard & Ruder 2018 (ULMFiT)",
    data=Row(
        "a language model pretrained on Wikitext-103 (103M words), then fine-tuned on the target task's text; "
        "six classification sets (IMDb, TREC-6, AG, …), 100 labelled examples upwards (Fig. 3)",
        "a language model on the docstrings and documentation of the installed packages and the standard library "
        "(~4.4M words with dnn's dev install; built at run time, its size and SHA-256 in the results) plus the "
        "pydoc help text without the held-out paragraphs (~46,000 words); pydoc paragraphs in 4 topic groups, "
        f"10 / 50 / 200 labelled per class, {VALID} validation and {TEST} test per class drawn once",
        "~4.4M words of Python documentation instead of 103M of Wikipedia, ~60× the labelled text; the target "
        "text joins the pretraining run instead of a second fine-tuning stage (dnn train does not yet start a "
        "language model from another)",
        decisive=True,
    ),
    model=Row(
        "AWD-LSTM: 3 layers of 1,150 units, embedding 400; vocabulary of the most frequent words",
        f"2 LSTM layers of 128 units, embedding 128; the {LM_VOCAB:,} most frequent words",
        "a far smaller language model",
    ),
    budget=Row(
        "full pretraining on Wikitext-103; LM and classifier fine-tuning to convergence",
        f"LM {LM_EPOCHS} epochs of ~6,800 updates of 32 × 35 words (~15M words seen); classifiers at least "
        f"{MIN_EPOCHS} epochs and {MIN_STEPS} updates of {BATCH}",
        "a few passes over a smaller corpus",
    ),
    optimiser=Row(
        "Adam; discriminative rates (÷ 2.6 per layer), slanted triangular rates, gradual unfreezing",
        "Adam lr 0.01 for the head, ÷ 2.6 per layer group below, gradual unfreezing; no slanted triangular schedule",
        "no slanted triangular schedule",
    ),
    seeds=Row(
        "not stated; fixed test sets",
        "3 seeds: each its own labelled sample and initialisation; one LM; the held-out paragraphs fixed",
        "none in kind",
    ),
    parallelism=Row("GPU", "one CPU thread", "none that matters: compared at the same budget"),
    criterion=Row(
        "'with only 100 labeled examples, it matches the performance of training from scratch on 100x "
        "more data' (abstract); the gain is largest with few labels (Fig. 3)",
        "means over seeds: pretrained ≥ scratch + 5 points at 10 labels per class; the gain larger at 10 "
        "than at 200; pretrained ≥ scratch at every size",
        "none in kind: means over seeds",
    ),
    remaining="4.4M words of Python documentation, not 103M of Wikipedia, and no separate target fine-tuning stage",
)


@experiment(
    "text-transfer",
    "a language model pretrained on unlabelled text helps classify text from few labels",
    PROTOCOL,
    # the corpus built in 112 s on a loaded machine (~70 s quiet); 150 of the LM's ~13,600 updates timed against
    # the lm-pydoc-words recipe at the same moment (2.7× slower than quiet): ~7,000 words/s quiet, so ~2,200 s for
    # 2 epochs of ~7.6M tokens; the 18 classifier runs ~160 s
    estimate_s=2450,
)
def text_transfer(ctx: Context):
    seeds, sizes = ((0,), (10,)) if ctx.quick else ((0, 1, 2), SIZES)

    def pretrain() -> dict:
        """The corpus built, the language model trained on it: one for every seed."""
        corpus = _corpus(ctx)
        files = [f"data.{split}={ctx.runs / 'corpus' / f'{split}.txt'}" for split in ("train", "valid", "test")]
        lm = ctx.train("lm", LM_RECIPE, ["data.source=null", *files, "train.report=false", "train.tensorboard=false",
                                         *(LM_QUICK if ctx.quick else LM_FULL)])  # fmt: skip
        return {"corpus": corpus, "lm": lm.record()}

    # kept like a seed, but only while the language model's run directory is still there for init_from to read
    pretrained = ctx.stage("language-model", pretrain, "the corpus and the language model",
                           usable=lambda data: as_run(data["lm"]["path"]).has(MODEL))  # fmt: skip
    corpus, lm = pretrained["corpus"], Run.from_record(pretrained["lm"])
    shape = [] if not ctx.quick else ["model.embedding_size=32", "model.hidden_size=32"]

    def one_seed(seed: int) -> dict:
        """The seed's labelled sample at each size, trained from the language model and from scratch."""
        files = _splits(ctx, seed, sizes)
        data = {}
        for n in sizes:
            per_epoch = math.ceil(n * len(GROUPS) / BATCH)
            epochs = 1 if ctx.quick else max(MIN_EPOCHS, math.ceil(MIN_STEPS / per_epoch))
            common = [f"seed={seed}", f"data.train={files[f'train{n}']}", f"data.valid={files['valid']}",
                      f"data.test={files['test']}", f"train.batch_size={BATCH}", f"train.epochs={epochs}",
                      "train.report=false", "train.tensorboard=false"]  # fmt: skip
            for variant, extra in (("pretrained", [f"train.init_from={lm.path}"]), ("scratch", [*SCRATCH, *shape])):
                run = ctx.train(f"{variant}-{n}-s{seed}", CLF_RECIPE, [*common, *extra])
                data[f"{variant}-{n}"] = run.results["test"]["accuracy"]
        return data

    records = ctx.each_seed(seeds, one_seed)
    acc = {(variant, n): [records[seed][f"{variant}-{n}"] for seed in seeds]
           for n in sizes for variant in ("pretrained", "scratch")}  # fmt: skip
    mean = {key: statistics.fmean(v) for key, v in acc.items()}
    table = Table(
        f"Test accuracy ({TEST} paragraphs per class, {len(GROUPS)} classes, chance {CHANCE:.2f}), mean ± sd over "
        f"{len(seeds)} seed(s)",
        ["labelled per class", "pretrained (ULMFiT)", "scratch", "gain (points)"],
    )
    for n in sizes:
        table.add(**{"labelled per class": n, "pretrained (ULMFiT)": spread(acc["pretrained", n]),
                     "scratch": spread(acc["scratch", n]),
                     "gain (points)": 100 * (mean["pretrained", n] - mean["scratch", n])})  # fmt: skip
    gain = {n: mean["pretrained", n] - mean["scratch", n] for n in sizes}
    few, many = sizes[0], sizes[-1]
    checks = [
        Check(f"at {few} labels per class, the pretrained classifier beats the one trained from scratch by ≥ 5 points "
              f"(mean of the seeds; Howard & Ruder 2018, Fig. 3: pretraining matters most with few labels)",
              gain[few] >= 0.05, f"{mean['pretrained', few]:.3f} vs {mean['scratch', few]:.3f} "
              f"({100 * gain[few]:+.1f} points)"),
        Check(f"the gain of pretraining is larger at {few} than at {many} labels per class", gain[few] > gain[many],
              f"{100 * gain[few]:+.1f} vs {100 * gain[many]:+.1f} points"),
        Check("the pretrained classifier is at least as accurate as the scratch one at every size (mean)",
              all(g >= 0 for g in gain.values()), ", ".join(f"{n}: {100 * g:+.1f}" for n, g in gain.items())),
    ]  # fmt: skip

    fig, axes = figure(1, width=6)
    ax = axes[0]
    for i, (variant, color) in enumerate((("pretrained", "C0"), ("scratch", "C3"))):
        ms = [mean[variant, n] for n in sizes]
        sd = [statistics.stdev(acc[variant, n]) if len(seeds) > 1 else 0.0 for n in sizes]
        ax.errorbar(sizes, ms, yerr=sd, fmt="o-", color=color, capsize=3, label=variant)
        for n in sizes:
            ax.plot([n * (1.04 if i else 0.96)] * len(seeds), acc[variant, n], ".", color=color, alpha=0.5)
    ax.axhline(CHANCE, color="grey", ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [str(n) for n in sizes])
    ax.set(xlabel="labelled paragraphs per class", ylabel="test accuracy", ylim=(0, 1),
           title="pydoc paragraphs by topic group")  # fmt: skip
    ax.legend(fontsize=8)
    plot = save_figure(fig, ctx.plot_path)

    lm_test = lm.results["test"].get("perplexity", math.nan)
    text_table = Table(
        "The language model's unlabelled text (built at run time from what is installed; never shipped)",
        ["part", "words"],
    )
    text_table.add(part="docstrings and documentation, training split", words=int(corpus["train_words"]) -
                   int(corpus["extra_words"]))  # fmt: skip
    text_table.add(part="the target text (pydoc help topics without the held-out paragraphs)",
                   words=int(corpus["extra_words"]))  # fmt: skip
    text_table.add(part="validation / test (docstrings)", words=f"{int(corpus['valid_words']):,} / "
                   f"{int(corpus['test_words']):,}")  # fmt: skip
    text_table.add(part="labelled training text at the largest size (for scale)",
                   words=_labelled_words(ctx, sizes[-1]))  # fmt: skip
    text_table.add(part="SHA-256 of the three files", words=str(corpus["sha256"])[:16])
    setup = (
        f"Self-supervised pretraining: recipe `{LM_RECIPE}` — a word-level LSTM language model (2 layers, 128 "
        f"units, embedding 128, the {LM_VOCAB if not ctx.quick else 2000:,} most frequent lower-cased words) trained "
        f"for {'10 updates' if ctx.quick else f'{LM_EPOCHS} epochs'} to predict the next word of "
        f"{int(corpus['words']):,} words: the docstrings and documentation of "
        f"{'a few standard-library modules' if ctx.quick else 'the installed packages and the standard library'} "
        f"(`dnn.experiments.corpus`; every paragraph sharing {SHINGLE} words in a row with the pydoc help text kept "
        f"out), then the target task's own text — the pydoc help topics without the held-out paragraphs — in the "
        f"same run (test perplexity on held-out docstrings {lm_test:.1f}). It sees no label and no held-out "
        f"paragraph; one LM serves every seed. Task: the paragraphs (≥ 8 words) of "
        f"{sum(len(t) for t in GROUPS.values())} pydoc topics, labelled by a topic group fixed in "
        f"`dnn.data.pydoc_topics.GROUPS` before any run ({', '.join(GROUPS)}): {VALID} validation and {TEST} test "
        f"paragraphs per class drawn once, then per seed nested training sets of {', '.join(map(str, sizes))} "
        f"paragraphs per class from the rest (the smallest class, expressions, has 295 paragraphs, so 200 fit). "
        f"Pretrained: recipe `{CLF_RECIPE}` with `train.init_from=LM` — the LM's tokenizer, vocabulary and "
        f"encoder, a new head, mean pooling, Adam with lr 0.01 for the head and /2.6 per layer group below "
        f"(discriminative rates), gradual unfreezing one group per epoch. Scratch: the same recipe, architecture "
        f"and budget, random weights, one lr 0.01, its vocabulary built from its own labelled paragraphs (what one "
        f"has without a language model). Budget: batch {BATCH}, at least {MIN_EPOCHS} epochs and {MIN_STEPS} "
        f"updates, best validation checkpoint. {len(seeds)} seed(s): each draws its own labelled sample and "
        f"initialisation. Expectations fixed before the run from Howard & Ruder 2018."
    )
    references = [
        "Howard & Ruder 2018 (ULMFiT), abstract: 'with only 100 labeled examples, it matches the performance of "
        "training from scratch on 100x more data'; Fig. 3: on IMDb ULMFiT with 100 labels matches scratch on 10× "
        "(supervised) to 20× more (semi-supervised, LM fine-tuned on 50k unlabelled reviews); on TREC-6 and AG "
        "the gap closes as labels grow. Discriminative rates η^{l−1} = η^l / 2.6; gradual unfreezing from the last "
        "layer; AWD-LSTM LM, 3 layers, pretrained on Wikitext-103 (103M words), then fine-tuned on the target text.",
        f"Here the LM reads {int(corpus['words']):,} words of Python documentation — far more than the labelled "
        f"text, far less than 103 million.",
    ]
    lesson = _lesson(ctx, checks, mean, sizes, int(corpus["words"]))
    return ctx.result(setup, [table, text_table], checks, references, plot, lesson)


def _labelled_words(ctx: Context, n: int) -> int:
    """Words in the labelled training paragraphs of seed 0 at ``n`` per class."""
    _, _, pool = _held_out()
    rng = random.Random(0)
    words = 0
    for group in pool:
        texts = pool[group][:]
        rng.shuffle(texts)
        words += sum(len(t.split()) for t in texts[:n])
    return words


def _lesson(ctx: Context, checks: list[Check], mean: dict, sizes: tuple[int, ...], words: int) -> str:
    if ctx.quick:
        return "Quick version (tiny LM, one size, one seed, one epoch): a check of the machinery only."
    few, many = sizes[0], sizes[-1]
    text = [
        "A language model learns from text alone: to guess the next word of Python's documentation it must learn "
        "which words go together (`loop`, `iteration`, `break`; `__init__`, `attribute`, `instance`). Its embedding "
        "and LSTM layers are then a head start for a classifier that has only a few labelled paragraphs."
    ]
    if checks[0].passed:
        text.append(f"With {few} labelled paragraphs per class that head start showed: {mean['pretrained', few]:.2f} "
                    f"against {mean['scratch', few]:.2f} from scratch.")  # fmt: skip
    else:
        text.append(
            f"Here, with {few} labelled paragraphs per class, it did not give the expected ≥ 5 points "
            f"({mean['pretrained', few]:.2f} against {mean['scratch', few]:.2f} from scratch), although the "
            f"language model read {words:,} words — far more than the labelled text, if still far less than "
            f"ULMFiT's 103 million of Wikipedia. What it learnt is Python's documentation at large (mostly the "
            f"APIs of numerical and scientific packages); which topic a paragraph of the language reference "
            f"belongs to is a finer distinction than that text teaches, and ULMFiT's second stage — fine-tuning "
            f"the language model on the target text alone before the classifier — is not done here (the target "
            f"text is about 1 % of what the language model read). Gradual unfreezing with rates divided by 2.6 per "
            f"layer also leaves the lower layers learning slowly within a short budget."
        )  # fmt: skip
    p_many, s_many = mean["pretrained", many], mean["scratch", many]
    if p_many >= s_many:
        shrinks = "shrinks" if checks[1].passed else "did not shrink"
        text.append(f"At {many} per class the scratch model has far more to learn from, and the gap {shrinks} "
                    f"({p_many:.2f} vs {s_many:.2f}).")  # fmt: skip
    else:
        text.append(
            f"With more labels the scratch model pulled ahead ({s_many:.2f} against {p_many:.2f} at {many} per "
            f"class): trained at lr 0.01 in every layer with a vocabulary of its own, it learns from 800 labelled "
            f"paragraphs what it needs, while the pretrained model's embedding learns 2.6³ ≈ 18× slower and "
            f"stays close to what next-word prediction on the documentation found useful. The gain was 'larger' at "
            f"{few} labels only in the sense that pretraining hurt less there."
        )
    return " ".join(text)
