"""What convolution buys, and transfer learning: ``cnn-vs-fc`` and ``transfer-learning`` on the 8×8 digits.

A fully connected layer gives every pixel its own weight into every unit: C·H_img·W_img·H weights, a number that
grows with the image, and a digit moved by a few pixels meets different weights. A convolution slides one small
kernel over all positions (locality, weight sharing); followed by a global pool, the network's answer hardly
depends on where the digit is (:mod:`dnn.models.convnet`, :mod:`dnn.models.mlp`).

Transfer learning (Yosinski et al. 2014): features learnt on one task (digits 0–4) are a better start for
another (digits 5–9 from a few labels) than random ones — fine-tuned, or even frozen with only a new head trained.
"""

from __future__ import annotations

import statistics

from dnn.experiments.base import Check, Context, Run, Table, figure, save_figure, spread
from dnn.experiments.protocol import Protocol, Row
from dnn.experiments.registry import experiment

RECIPE = "digits-lenet5"  # scikit-learn's digits, Adam 5e-3 with a cosine schedule, batch 32
DIGITS_8X8 = ["data.image_size=8"]  # the digits as they are (the recipe upsamples to LeNet's 32×32 by default)
MODELS = {"mlp": ["model.name=mlp", "model.hidden_sizes=[64]"], "convnet": ["model.name=convnet"]}
LABELS = {"logreg": "logistic regression (scikit-learn)", "mlp": "fully connected, 1 hidden layer of 64",
          "convnet": "small CNN (3 convs, global pool)"}  # fmt: skip
CANVAS = 16
CHANCE = 0.1  # ten classes
SKLEARN_LOGREG = 0.933  # scikit-learn's own digits example (its last 10 % as test)


def _logistic_regression(overrides: list[str]) -> tuple[float, float | None]:
    """scikit-learn's logistic regression on the raw pixels of the task's training split: test accuracy, and the
    accuracy on the same test images centred when the run's test images are placed at random offsets."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from dnn.run import resolve_config
    from dnn.tasks import make_task

    def splits(extra: list[str]):
        task = make_task(resolve_config(RECIPE, [*DIGITS_8X8, *overrides, *extra]))
        task.prepare(lambda message: None)
        return {name: (x.flatten(1).numpy(), y.numpy()) for name, (x, y) in task.splits.items()}

    data = splits([])
    with threadpool_limits(1):  # BLAS threads only wait on a busy core here, like torch's
        model = LogisticRegression(max_iter=3000).fit(*data["train"])
    shifted = float(model.score(*data["test"]))
    if not any(o.startswith("data.canvas_test=random") for o in overrides):
        return shifted, None
    return shifted, float(model.score(*splits(["data.canvas_test=center"])["test"]))


def _centred_accuracy(run: Run, overrides: list[str]) -> float:
    """The run's model on the same test digits placed at the centre of the canvas."""
    from dnn.run import resolve_config
    from dnn.tasks import make_task

    task = make_task(resolve_config(RECIPE, [*DIGITS_8X8, *overrides, "data.canvas_test=center"]))
    task.prepare(lambda message: None)
    return task.evaluate(run.model(), "test")["accuracy"]


def _parameters(name: str, size: int) -> int:
    from dnn.models.registry import create_model, model_config

    options = {"hidden_sizes": [64]} if name == "mlp" else {}
    model = create_model(name, model_config(name, num_classes=10, in_channels=1, image_size=size, **options))
    return sum(p.numel() for p in model.parameters())


CNN_PROTOCOL = Protocol(
    paper="LeCun, Bottou, Bengio & Haffner 1998",
    data=Row(
        "MNIST: 60,000 training and 10,000 test digits, 28×28 in a 32×32 field",
        "scikit-learn's 1,797 digits, 8×8, split 65/10/25 by seed; then pasted on a 16×16 canvas, tested at the "
        "centre and at random offsets",
        "about 1/50 of the images, 1/16 of the pixels",
    ),
    model=Row(
        "LeNet-5 (~60,000 parameters); a fully connected net with 300 hidden units",
        "a small CNN (3 convolutions, global pool; 28,714 parameters); a fully connected net with 64 hidden "
        "units (4,810 at 8×8)",
        "smaller networks, in proportion to the images",
    ),
    budget=Row(
        "20 passes through the training set",
        "30 epochs of batches of 32 (~1,100 updates)",
        "none in kind: both train to their plateau",
    ),
    optimiser=Row(
        "stochastic diagonal Levenberg-Marquardt",
        "Adam 5e-3, cosine schedule",
        "Adam instead of diagonal Levenberg-Marquardt",
    ),
    seeds=Row("one network per model", "3 seeds (split, initialisation, offsets)", "more seeds"),
    parallelism=Row("CPU (1998)", "one CPU thread", "none"),
    criterion=Row(
        "test error: linear 12.0 %, 300-unit net 4.7 %, LeNet-5 0.95 %; §II: weight sharing gives shift "
        "invariance a fully connected net must learn",
        "means over seeds: scikit-learn's logistic "
        "regression accuracy reached, CNN ≥ FC net; on shifted digits the CNN keeps and the FC net loses "
        "more than half its accuracy above chance; the centred-trained CNN ≥ the FC net trained shifted",
        "none in kind: means, thresholds from chance and the centred accuracy",
    ),
    remaining="none",
)


@experiment(
    "cnn-vs-fc",
    "convolution shares weights across positions: a CNN keeps its accuracy on shifted digits",
    CNN_PROTOCOL,
    estimate_s=38,  # the 2026-12-05 full run
)
def cnn_vs_fc(ctx: Context):
    seeds = (0,) if ctx.quick else (0, 1, 2)
    budget = ["train.epochs=2"] if ctx.quick else ["train.epochs=30"]
    split = ["data.valid_fraction=0.1", "data.test_fraction=0.25"]
    centred = Table(
        "Centred 8×8 digits: test accuracy (25 % of the 1,797 digits, stratified by seed)",
        ["model", "parameters", *[f"seed {s}" for s in seeds], "mean"],
    )
    shifted = Table(
        f"The digits on a {CANVAS}×{CANVAS} canvas: trained centred, tested centred and at random offsets (mean of "
        f"{len(seeds)} seed(s))",
        ["model", "trained", "parameters", "test centred", "test at random offsets", "drop",
         "at random offsets, mean ± sd"],
    )  # fmt: skip
    grid = [(name, options, "center") for name, options in MODELS.items()] + [("mlp", MODELS["mlp"], "random")]

    def one_seed(seed: int) -> dict:
        """Centred accuracies of the three models; then, on the canvas, (centred, shifted) test accuracy pairs."""
        base = [f"seed={seed}", *split, *budget]
        data: dict = {"centred": {"logreg": _logistic_regression(base)[0]}, "moved": {}}
        for name, options in MODELS.items():
            run = ctx.train(f"{name}-s{seed}", RECIPE, [*DIGITS_8X8, *base, *options])
            data["centred"][name] = run.results["test"]["accuracy"]
        canvas = [*base, f"data.canvas_size={CANVAS}", "data.canvas_test=random"]
        test_shifted, test_centred = _logistic_regression(canvas)
        data["moved"]["logreg/center"] = [test_centred, test_shifted]
        for name, options, train_at in grid:
            overrides = [*canvas, f"data.canvas_train={train_at}", *options]
            run = ctx.train(f"{name}-canvas-{train_at}-s{seed}", RECIPE, [*DIGITS_8X8, *overrides])
            data["moved"][f"{name}/{train_at}"] = [_centred_accuracy(run, overrides), run.results["test"]["accuracy"]]
        return data

    records = ctx.each_seed(seeds, one_seed)
    acc = {name: [records[seed]["centred"][name] for seed in seeds] for name in ("logreg", "mlp", "convnet")}
    moved = {tuple(key.split("/")): [tuple(records[seed]["moved"][key]) for seed in seeds]
             for key in records[seeds[0]]["moved"]}  # fmt: skip
    for name, values in acc.items():
        params = _parameters(name, 8) if name != "logreg" else 8 * 8 * 10 + 10
        centred.add(**{"model": LABELS[name], "parameters": params, **{f"seed {s}": v for s, v in zip(seeds, values)},
                       "mean": statistics.fmean(values)})  # fmt: skip
    means: dict[tuple[str, str], tuple[float, float]] = {}
    for (name, train_at), pairs in moved.items():
        c, s = (statistics.fmean(p[i] for p in pairs) for i in (0, 1))
        means[name, train_at] = (c, s)
        params = _parameters(name, CANVAS) if name != "logreg" else CANVAS * CANVAS * 10 + 10
        where = "centred" if train_at == "center" else "at random offsets"
        shifted.add(**{"model": LABELS[name], "trained": where, "parameters": params, "test centred": c,
                       "test at random offsets": s, "drop": c - s,
                       "at random offsets, mean ± sd": spread([p[1] for p in pairs])})  # fmt: skip
    sizes = (8, 16, 32, 64)
    growth = Table(
        "Parameters against the image side (10 classes, grey)",
        ["model", *[f"{s}×{s}" for s in sizes]],
    )
    counts = {name: [_parameters(name, s) for s in sizes] for name in MODELS}
    for name in MODELS:
        growth.add(**{"model": LABELS[name], **{f"{s}×{s}": n for s, n in zip(sizes, counts[name])}})

    mean = {name: statistics.fmean(v) for name, v in acc.items()}
    cnn_c, cnn_s = means["convnet", "center"]
    fc_c, fc_s = means["mlp", "center"]
    fc_r = means["mlp", "random"][1]
    cnn_kept, fc_kept = (cnn_s - CHANCE) / (cnn_c - CHANCE), (fc_s - CHANCE) / (fc_c - CHANCE)
    checks = [
        Check(f"centred 8×8 digits: every model reaches scikit-learn's published logistic-regression accuracy on "
              f"these digits ({SKLEARN_LOGREG}; mean over seeds)", min(mean.values()) >= SKLEARN_LOGREG,
              ", ".join(f"{n} {v:.3f}" for n, v in mean.items())),
        Check("centred 8×8 digits: the CNN is at least as accurate as the fully connected net (LeCun et al. 1998: "
              "LeNet-5 0.95 % vs 4.7 % error for a 300-unit FC net on MNIST)", mean["convnet"] >= mean["mlp"],
              f"{mean['convnet']:.3f} vs {mean['mlp']:.3f}"),
        Check("digits at random offsets: the CNN trained on centred digits keeps more than half of its accuracy "
              "above chance (0.1)", cnn_kept > 0.5, f"{cnn_c:.3f} → {cnn_s:.3f}: keeps {cnn_kept:.2f}"),
        Check("digits at random offsets: the FC net trained on centred digits loses more than half of its accuracy "
              "above chance", fc_kept < 0.5, f"{fc_c:.3f} → {fc_s:.3f}: keeps {fc_kept:.2f}"),
        Check("digits at random offsets: the CNN trained only on centred digits is at least as accurate as the FC "
              "net trained at random offsets (LeCun et al. 1998, §II: built-in invariance beats learning it from "
              "the data)", cnn_s >= fc_r, f"{cnn_s:.3f} vs {fc_r:.3f}"),
        Check("the FC net's parameters grow with the image; the CNN's stay the same",
              all(a < b for a, b in zip(counts["mlp"], counts["mlp"][1:])) and len(set(counts["convnet"])) == 1,
              f"FC {' → '.join(f'{n:,}' for n in counts['mlp'])}; CNN {counts['convnet'][0]:,} at every size",
              quick_ok=True),
    ]  # fmt: skip

    fig, axes = figure(2)
    names = list(means)
    x = range(len(names))
    axes[0].bar([i - 0.2 for i in x], [means[n][0] for n in names], 0.4, label="test centred")
    axes[0].bar([i + 0.2 for i in x], [means[n][1] for n in names], 0.4, label="test at random offsets")
    axes[0].set_xticks(list(x), [f"{n}\n(trained {t})" for n, t in names], fontsize=8)
    axes[0].set(ylabel="test accuracy", ylim=(0, 1), title=f"digits on a {CANVAS}×{CANVAS} canvas")
    axes[0].legend(fontsize=8)
    for name, color in (("mlp", "C3"), ("convnet", "C0")):
        axes[1].loglog(sizes, counts[name], "o-", color=color, label=LABELS[name])
    axes[1].set(xlabel="image side (pixels)", ylabel="parameters", title="parameters against image size")
    axes[1].set_xticks(sizes, [str(s) for s in sizes], minor=False)
    axes[1].minorticks_off()
    axes[1].legend(fontsize=8)
    plot = save_figure(fig, ctx.plot_path)

    setup = (
        f"scikit-learn's 8×8 digits through recipe `{RECIPE}` (Adam 5e-3, cosine schedule, batch 32, "
        f"{budget[0].split('=')[1]} epochs, best validation checkpoint) with `model.name=mlp` "
        f"(`hidden_sizes=[64]`) and `model.name=convnet`, split 65/10/25 (train/valid/test) by seed; scikit-learn's "
        f"`LogisticRegression` on the raw pixels of the same training split. Then `data.canvas_size={CANVAS}`: "
        f"every digit pasted onto a blank {CANVAS}×{CANVAS} canvas, training and validation digits at the centre "
        f"(`data.canvas_train=center`; one more FC run with `random`: one random offset per training digit), test "
        f"digits once at the centre and once at a random offset each (`data.canvas_test=random`, drawn by seed). "
        f"{len(seeds)} seed(s): each draws its own split, initialisation and offsets. Thresholds, fixed before the "
        f"run: on centred digits, scikit-learn's published logistic-regression accuracy ({SKLEARN_LOGREG}) and the "
        f"ordering of LeCun et al. 1998 (the CNN at least as good as the FC net); on shifted digits, chance (0.1) "
        f"and the centred accuracy bound what a model can keep, and *keeps* / *loses* means more / less than half "
        f"of its accuracy above chance; and LeCun et al.'s argument (§II) that weight sharing gives a CNN the shift "
        f"invariance an FC net has to learn from shifted examples: the centred-trained CNN should match the FC net "
        f"trained at random offsets."
    )
    references = [
        "scikit-learn's own digits example (last 10 % as test): logistic regression 0.933, k-NN 0.961.",
        "Measured with PyTorch (REFERENCES.md; 75/25 stratified split, 3 seeds): logistic regression 0.966, "
        "MLP(64) 0.973, small CNN 0.978.",
        "LeCun et al. 1998 (MNIST test error): linear classifier 12.0 %, 2-layer net with 300 hidden units 4.7 %, "
        "LeNet-5 0.95 %.",
    ]
    lesson = _cnn_lesson(ctx, checks, cnn_c, cnn_s, fc_c, fc_s, fc_r)
    return ctx.result(setup, [centred, shifted, growth], checks, references, plot, lesson)


def _cnn_lesson(ctx: Context, checks: list[Check], cnn_c: float, cnn_s: float, fc_c: float, fc_s: float,
                fc_r: float) -> str:  # fmt: skip
    if ctx.quick:
        return "Quick version (2 epochs, one seed): a check of the machinery only; the full run is `results.md`."
    text = [
        f"A fully connected net gives every pixel its own weights. Trained on digits in the middle of the canvas, "
        f"it has never used the border pixels, so the same digit moved a few pixels meets weights that were never "
        f"trained: it falls from {fc_c:.2f} to {fc_s:.2f}, close to guessing. A CNN slides the same small filters "
        f"over every position and then averages over the whole image, so a moved digit produces moved feature maps "
        f"and nearly the same average: it went from {cnn_c:.2f} to {cnn_s:.2f}."
    ]
    if checks[4].passed:
        text.append(f"The FC net can learn to cope if it is shown digits at every offset, but even then it reached "
                    f"only {fc_r:.2f}: it must learn each position separately from the same ~1,170 images, while the "
                    f"CNN gets the invariance for free from its structure — LeCun et al.'s argument for "
                    f"convolution.")  # fmt: skip
    else:
        text.append(f"The FC net trained on digits at every offset did better here ({fc_r:.2f}): with enough "
                    f"shifted examples a fully connected net learns the invariance itself; the CNN's advantage is "
                    f"that it needs none of them.")  # fmt: skip
    text.append(
        "The CNN is not perfectly invariant, though: its 2×2 max-pool with stride 2 only commutes with "
        "shifts by an even number of pixels, and the zero padding at the canvas border differs from the "
        "background — a one-pixel shift changes its features a little (Azulay & Weiss 2019; Zhang 2019 "
        "blurs before subsampling to fix it)."
    )
    if not (checks[0].passed and checks[1].passed):
        text.append(
            "On centred 8×8 digits, not every expectation held: with ~1,170 training images and 64 pixels, "
            "every model is close to its ceiling and the differences are within a few test images."
        )
    return " ".join(text)


FEW = 10  # labelled training images per class of the new task
VARIANTS = (
    ("from scratch", []),
    ("fine-tuned", ["init"]),
    ("frozen pretrained body, new head", ["init", "freeze"]),
    ("frozen random body, new head", ["freeze"]),
)


TRANSFER_PROTOCOL = Protocol(
    paper="Yosinski, Clune, Bengio & Lipson 2014",
    data=Row(
        "ImageNet split into two halves of 500 classes (~645,000 images each)",
        "digits 0–4 of scikit-learn's "
        "set (all their training images) to pretrain; digits 5–9 from 10 labelled images per class",
        "a small, nearby pair of tasks; few labels on the second",
    ),
    model=Row(
        "an 8-layer ImageNet network (Krizhevsky et al.'s)",
        "a small CNN (3 convolutions, global pool, 28,714 parameters)",
        "a far smaller network",
    ),
    budget=Row(
        "full ImageNet training of each network",
        "pretraining 30 epochs; the new task 40 epochs of batches of 10 (200 updates)",
        "far less training, on far less data",
    ),
    optimiser=Row("SGD with momentum (Caffe)", "Adam 5e-3, cosine schedule", "Adam instead of SGD"),
    seeds=Row(
        "several networks per point of their figures (not restated here)",
        "3 seeds: each pretrains its own body and draws its own labels",
        "none in kind",
    ),
    parallelism=Row("GPU", "one CPU thread", "none"),
    criterion=Row(
        "'transferring features even from distant tasks can be better than using random features'; "
        "fine-tuned transferred features generalise better than training from scratch",
        "means over seeds: fine-tuned ≥ scratch + 5 points; frozen pretrained body > frozen random body",
        "none in kind: means over seeds",
    ),
    remaining="none",
)


@experiment(
    "transfer-learning",
    "features pretrained on digits 0–4 help learn 5–9 from 10 labels per class",
    TRANSFER_PROTOCOL,
    estimate_s=14,  # the 2026-12-05 full run
)
def transfer_learning(ctx: Context):
    seeds = (0,) if ctx.quick else (0, 1, 2)
    pre_epochs, few_epochs = (1, 2) if ctx.quick else (30, 40)
    common = ["model.name=convnet"]

    def one_seed(seed: int) -> dict:
        """A body pretrained on 0–4, then the four ways to learn 5–9 from it: accuracies and trained parameters."""
        pre = ctx.train(f"pretrain-0to4-s{seed}", RECIPE, [*DIGITS_8X8, f"seed={seed}", "data.classes=[0,1,2,3,4]",
                                                           f"train.epochs={pre_epochs}", *common])  # fmt: skip
        data: dict = {"pretrain": pre.results["test"]["accuracy"], "accuracy": {}, "trainable": {}}
        for label, options in VARIANTS:
            overrides = [f"seed={seed}", "data.classes=[5,6,7,8,9]", f"data.per_class={FEW}", "data.valid_fraction=0",
                         "train.batch_size=10", f"train.epochs={few_epochs}", *common]  # fmt: skip
            if "init" in options:
                overrides.append(f"train.init_from={pre.path}")
            if "freeze" in options:
                overrides.append("train.freeze_up_to=body")
            run = ctx.train(f"{label.split(',')[0].replace(' ', '-')}-s{seed}", RECIPE, [*DIGITS_8X8, *overrides])
            data["accuracy"][label] = run.results["test"]["accuracy"]
            data["trainable"][label] = run.parameters("fc") if "freeze" in options else run.parameters()
        return data

    records = ctx.each_seed(seeds, one_seed)
    results = {label: [records[seed]["accuracy"][label] for seed in seeds] for label, _ in VARIANTS}
    pretrain_acc = [records[seed]["pretrain"] for seed in seeds]
    trainable = records[seeds[-1]]["trainable"]
    table = Table(
        f"Digits 5–9 from {FEW} labelled images per class: test accuracy (all test images of 5–9)",
        ["variant", "trained parameters", *[f"seed {s}" for s in seeds], "mean", "mean ± sd"],
    )
    for label, _ in VARIANTS:
        table.add(**{"variant": label, "trained parameters": trainable[label],
                     **{f"seed {s}": v for s, v in zip(seeds, results[label])},
                     "mean": statistics.fmean(results[label]), "mean ± sd": spread(results[label])})  # fmt: skip
    mean = {label: statistics.fmean(v) for label, v in results.items()}
    gain = mean["fine-tuned"] - mean["from scratch"]
    frozen_p, frozen_r = mean["frozen pretrained body, new head"], mean["frozen random body, new head"]
    checks = [
        Check("fine-tuned beats trained-from-scratch by ≥ 5 points (mean of the seeds)", gain >= 0.05,
              f"{mean['fine-tuned']:.3f} vs {mean['from scratch']:.3f} ({100 * gain:+.1f} points)"),
        Check("a frozen pretrained body beats a frozen random one", frozen_p > frozen_r,
              f"{frozen_p:.3f} vs {frozen_r:.3f}"),
    ]  # fmt: skip

    fig, axes = figure(1, width=7)
    ax = axes[0]
    for i, (label, _) in enumerate(VARIANTS):
        ax.bar(i, mean[label], 0.6, color=f"C{i}", alpha=0.7)
        ax.plot([i] * len(seeds), results[label], "k.", ms=8)
    ax.set_xticks(range(len(VARIANTS)), [label.replace(", ", ",\n") for label, _ in VARIANTS], fontsize=8)
    ax.set(ylabel="test accuracy on digits 5–9", ylim=(0, 1), title=f"{FEW} labels per class; dots: seeds")
    plot = save_figure(fig, ctx.plot_path)

    setup = (
        f"The small CNN (`model.name=convnet`) through recipe `{RECIPE}` (Adam 5e-3, cosine). Pretraining: digits "
        f"0–4 only (`data.classes=[0,1,2,3,4]`, all their training images, {pre_epochs} epochs; test accuracy on "
        f"0–4: {', '.join(f'{a:.3f}' for a in pretrain_acc)}). New task: digits 5–9 with {FEW} training images per "
        f"class (`data.classes=[5,6,7,8,9] data.per_class={FEW}`, drawn by seed, no validation labels: the weights "
        f"after {few_epochs} epochs of batch 10 are tested), four ways: from scratch; fine-tuned from the pretrained "
        f"run (`train.init_from=RUN`: the body's weights, a new head); the pretrained body frozen "
        f"(`train.freeze_up_to=body`) with only a new head trained; a random body frozen the same way. "
        f"{len(seeds)} seed(s): each seed pretrains its own body and draws its own few labels."
    )
    references = [
        "Yosinski, Clune, Bengio & Lipson 2014: transferred-and-fine-tuned features generalise better than training "
        "from scratch, and the boost lingers; features from a distant task still beat random ones; freezing "
        "middle layers hurts (co-adaptation).",
    ]
    if ctx.quick:
        lesson = "Quick version (1–2 epochs, one seed): a check of the machinery only; the full run is `results.md`."
    else:
        lesson = (
            f"With only {FEW} labelled images per digit, a CNN trained from scratch has little to learn good "
            f"filters from: {mean['from scratch']:.2f} on average, and unreliable — from "
            f"{min(results['from scratch']):.2f} to {max(results['from scratch']):.2f} between seeds. Starting from "
            f"a CNN that already learnt strokes, curves and loops on the digits 0–4 gives it those filters for "
            f"free: fine-tuned, it reached {mean['fine-tuned']:.2f} ({min(results['fine-tuned']):.2f}–"
            f"{max(results['fine-tuned']):.2f}). "
            + (
                "With so few seeds and so much spread, the gain in the mean rests mostly on the from-scratch runs "
                "that failed — steadiness is a large part of what pretraining buys here. "
                if min(results["from scratch"]) < min(results["fine-tuned"]) - 0.3
                else ""
            )
            + (
                "Frozen pretrained features with only a new output layer beat frozen random ones "
                f"({frozen_p:.2f} vs {frozen_r:.2f}): what was learnt on one task is useful on another, though "
                "letting the body adapt (fine-tuning) is better still, as Yosinski et al. found."
                if frozen_p > frozen_r
                else f"Frozen pretrained features did not beat frozen random ones here ({frozen_p:.2f} vs "
                f"{frozen_r:.2f}): a random convolutional body followed by a trained head is a surprisingly strong "
                f"baseline on 8×8 images; the gain of pretraining shows when the body may adapt."
            )
            + " Transfer learning for text (a language model pretrained on unlabelled text, then fine-tuned to "
            "classify) is the text-transfer experiment."
        )
    return ctx.result(setup, [table], checks, references, plot, lesson)
