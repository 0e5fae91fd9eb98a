"""Recurrent units at work: ``adding-problem``, ``gru-vs-lstm`` and ``truncated-bptt``.

Adding problem (Hochreiter & Schmidhuber 1997): a sequence of T (value, marker) pairs, the target the sum of
the two marked values; predicting 1 always scores MSE = Var(U₁ + U₂) = 1/6 ≈ 0.167, so a model beats that
baseline only by carrying a value across up to T steps. Parameters of one recurrent layer (torch's layout,
input size I, hidden size H)::

    tanh RNN  1·(H·(I + H) + 2H)        GRU  3·(H·(I + H) + 2H)        LSTM  4·(H·(I + H) + 2H)

Truncated BPTT (:mod:`dnn.tasks.language`): a text read as B streams in chunks of k characters; the state is
carried from chunk to chunk, the gradient stops at each chunk's start. A smaller k means more, cheaper updates
per epoch and a gradient that reaches back at most k characters.
"""

from __future__ import annotations

from dnn.experiments.base import Check, Context, Run, Table, figure, save_figure
from dnn.experiments.registry import experiment

CELL_NAMES = {"rnn": "tanh RNN", "lstm": "LSTM (forget bias 1)", "gru": "GRU"}
SOLVED = 0.05  # "steps needed": the first evaluation with validation MSE below this

# ------------------------------------------------------------------------------------------ adding-problem

# (T, cells, steps): T = 50 is the setting with its expected numbers; T = 100 and 200 the longer ones
ADDING_FULL = ((50, ("rnn", "lstm", "gru"), 3000), (100, ("rnn", "lstm", "gru"), 3000), (200, ("lstm", "gru"), 2000))
ADDING_QUICK = ((10, ("rnn", "lstm", "gru"), 30),)
# measured with PyTorch (REFERENCES.md): x ~ U[0,1], H = 32, Adam 1e-3, batch 64, clip 1, 3000 steps, test MSE
ADDING_REFERENCE = {(50, "gru"): "0.0011", (50, "lstm"): "0.0121", (50, "rnn"): "0.173", (100, "gru"): "0.0019",
                    (100, "lstm"): "0.037", (100, "rnn"): "0.166"}  # fmt: skip


def _adding_run(ctx: Context, T: int, cell: str, steps: int, hidden: int) -> Run:
    sizes = "[256,64,64]" if ctx.quick else "[10000,1000,1000]"
    overrides = [f"data.length={T}", f"data.sizes={sizes}", f"model.cell={cell}", f"model.hidden_size={hidden}",
                 "model.forget_bias=1.0", "train.batch_size=64", "train.lr=0.001", "train.clip_norm=1.0",
                 f"train.max_steps={steps}", "train.epochs=1000", f"train.eval_every={10 if ctx.quick else 250}",
                 "train.log_every=50"]  # fmt: skip
    return ctx.train(f"T{T}-{cell}", "adding-lstm", overrides)


@experiment("adding-problem", "a tanh RNN stays at the adding problem's baseline; LSTM and GRU solve it")
def adding_problem(ctx: Context):
    grid = ADDING_QUICK if ctx.quick else ADDING_FULL
    hidden = 8 if ctx.quick else 32
    table = Table(
        f"Test MSE on the adding problem (H = {hidden}, Adam 1e-3, batch 64, clip 1; baseline: always predict 1)",
        ["T", "cell", "parameters", "steps", "test MSE", "baseline MSE", f"steps to valid MSE < {SOLVED}",
         "seconds", "PyTorch reference (H = 32, 3000 steps)"],
    )  # fmt: skip
    runs: dict[tuple[int, str], Run] = {}
    for T, cells, steps in grid:
        for cell in cells:
            run = runs[T, cell] = _adding_run(ctx, T, cell, steps, hidden)
            test = run.results["test"]
            table.add(**{"T": T, "cell": CELL_NAMES[cell], "parameters": run.parameters(), "steps": run.steps,
                         "test MSE": test["mse"], "baseline MSE": test["baseline_mse"],
                         f"steps to valid MSE < {SOLVED}": run.first_step("mse", SOLVED) or "not reached",
                         "seconds": run.seconds, "PyTorch reference (H = 32, 3000 steps)":
                         ADDING_REFERENCE.get((T, cell), "–")})  # fmt: skip

    def mse(T: int, cell: str) -> float:
        run = runs.get((T, cell))
        return run.results["test"]["mse"] if run is not None else float("nan")

    checks = [
        Check("T = 50: GRU test MSE < 0.01", mse(50, "gru") < 0.01, f"{mse(50, 'gru'):.4f}"),
        Check("T = 50: LSTM (forget bias 1) test MSE < 0.05", mse(50, "lstm") < 0.05, f"{mse(50, 'lstm'):.4f}"),
        Check("T = 50: tanh RNN test MSE > 0.15 (stays at the baseline)", mse(50, "rnn") > 0.15,
              f"{mse(50, 'rnn'):.4f}"),
        Check("T = 100: tanh RNN test MSE > 0.15 (never beats the baseline at T ≥ 100)", mse(100, "rnn") > 0.15,
              f"{mse(100, 'rnn'):.4f}"),
    ]  # fmt: skip
    for T in (100, 200):
        for cell in ("lstm", "gru"):
            checks.append(Check(f"T = {T}: {CELL_NAMES[cell]} beats the baseline clearly (test MSE < 0.1)",
                                mse(T, cell) < 0.1, f"{mse(T, cell):.4f}"))  # fmt: skip

    lengths = [T for T, _, _ in grid]
    fig, axes = figure(len(lengths), width=4.5)
    for ax, T in zip(axes, lengths):
        for cell, color in (("rnn", "C3"), ("lstm", "C0"), ("gru", "C2")):
            if (T, cell) in runs:
                evals = runs[T, cell].metrics("eval")
                ax.semilogy([r["step"] for r in evals], [r["mse"] for r in evals], color=color, label=CELL_NAMES[cell])
        ax.axhline(1 / 6, color="grey", ls="--", lw=0.8, label="baseline 1/6")
        ax.set(xlabel="step", ylabel="validation MSE", title=f"T = {T}")
    axes[0].legend(fontsize=8)
    plot = save_figure(fig, ctx.plot_path)

    setup = (
        f"Recipe `adding-lstm` (a `sequence_regressor`: one recurrent layer, the last hidden state → a linear "
        f"output) with H = {hidden}, Adam lr 1e-3, batch 64, gradient clipping at norm 1, LSTM forget-gate bias 1, "
        f"{'256' if ctx.quick else '10,000'} training sequences (each epoch reshuffled); grid (T, cells, steps): "
        + "; ".join(f"T = {T}: {', '.join(CELL_NAMES[c] for c in cells)}, {steps} steps" for T, cells, steps in grid)
        + f". The best checkpoint by validation MSE (evaluated every {10 if ctx.quick else 250} steps) is tested on "
        f"{'64' if ctx.quick else '1,000'} new sequences. *Steps to valid MSE < {SOLVED}*: the first evaluation "
        f"below it, i.e. when the model found the memory."
    )
    references = [
        "Baseline (always predict 1): MSE = Var(U₁+U₂) = 1/6 ≈ 0.167 (papers quote 0.1767).",
        "Hochreiter & Schmidhuber 1997, Table 7: LSTM solves T = 100 / 500 / 1000 after 74k / 209k / 853k sequences.",
        "Le, Jaitly & Hinton 2015; Arjovsky, Shah & Bengio 2016 (RMSProp 1e-3, clip 1, H = 128): the tanh RNN never "
        "beats the baseline at T = 100–750; the LSTM beats it up to T = 400.",
        "Bai, Kolter & Koltun 2018, Table 1 (T = 600, ~70k parameters): LSTM 0.164, GRU 5.3e-5, tanh RNN 0.177.",
        "Measured with PyTorch (REFERENCES.md; H = 32, 3000 steps): T = 50 — GRU 0.0011, LSTM 0.0121, tanh RNN "
        "0.173; T = 100 — GRU 0.0019, LSTM 0.037, tanh RNN 0.166.",
    ]
    return ctx.result(setup, [table], checks, references, plot)


# ------------------------------------------------------------------------------------------ gru-vs-lstm


def _lm_overrides(cell: str, k: int, hidden: int, steps: int, eval_every: int, epochs: int) -> list[str]:
    """Recipe ``charlm-pydoc`` shrunk to one layer of ``hidden`` units (embedding 64), BPTT length ``k``."""
    return [f"model.cell={cell}", "model.num_layers=1", f"model.hidden_size={hidden}", "model.embedding_size=64",
            f"data.length={k}", f"train.max_steps={steps}", f"train.epochs={epochs}", f"train.eval_every={eval_every}",
            "train.log_every=10"]  # fmt: skip


@experiment("gru-vs-lstm", "a GRU has exactly 3/4 of an LSTM's parameters and learns as well; both beat a tanh RNN")
def gru_vs_lstm(ctx: Context):
    quick = ctx.quick
    adding_steps, adding_hidden, adding_T = (20, 8, 10) if quick else (2000, 64, 50)
    lm_hidden, lm_k, lm_steps = (16, 20, 10) if quick else (128, 50, 0)
    table = Table(
        "The same two tasks, the same budget, three recurrent units",
        ["task", "cell", "recurrent parameters", "÷ LSTM's", "ms per step", "steps", "result", "metric"],
    )
    runs: dict[tuple[str, str], Run] = {}
    results: dict[tuple[str, str], float] = {}
    for cell in ("rnn", "lstm", "gru"):
        overrides = [f"model.cell={cell}", f"model.hidden_size={adding_hidden}", f"data.length={adding_T}",
                     f"train.max_steps={adding_steps}", "train.epochs=1000",
                     f"data.sizes={'[200,50,50]' if quick else '[10000,1000,1000]'}"]  # fmt: skip
        runs["adding", cell] = ctx.train(f"adding-{cell}", "adding-lstm", overrides)
        results["adding", cell] = runs["adding", cell].results["test"]["mse"]
        overrides = _lm_overrides(cell, lm_k, lm_hidden, lm_steps, 0, 1)
        runs["lm", cell] = ctx.train(f"charlm-{cell}", "charlm-pydoc", overrides)
        results["lm", cell] = runs["lm", cell].results["valid"]["perplexity"]
    params = {key: run.parameters("rnn") for key, run in runs.items()}
    for task, metric, items in (("adding", "test MSE", 50), ("lm", "valid perplexity", 32 * lm_k)):
        for cell in ("rnn", "lstm", "gru"):
            table.add(**{"task": f"adding problem, T = {adding_T}" if task == "adding" else "char LM on pydoc, k = "
                         f"{lm_k}", "cell": CELL_NAMES[cell], "recurrent parameters": params[task, cell],
                         "÷ LSTM's": params[task, cell] / params[task, "lstm"],
                         "ms per step": runs[task, cell].ms_per_step(items), "steps": runs[task, cell].steps,
                         "result": results[task, cell], "metric": metric})  # fmt: skip

    checks = []
    for task in ("adding", "lm"):
        gru, lstm = params[task, "gru"], params[task, "lstm"]
        checks.append(Check(f"{task}: the GRU layer has exactly 3/4 of the LSTM layer's parameters",
                            4 * gru == 3 * lstm, f"{gru:,} / {lstm:,} = {gru / lstm:.4f}", quick_ok=True))  # fmt: skip
        for cell in ("lstm", "gru"):
            better = results[task, cell] < results[task, "rnn"]
            checks.append(Check(f"{task}: {CELL_NAMES[cell]} beats the tanh RNN", better,
                                f"{results[task, cell]:.4g} vs {results[task, 'rnn']:.4g}"))  # fmt: skip

    fig, axes = figure(2)
    for cell, color in (("rnn", "C3"), ("lstm", "C0"), ("gru", "C2")):
        for ax, task in ((axes[0], "adding"), (axes[1], "lm")):
            lines = runs[task, cell].metrics("train")
            ax.plot([r["step"] for r in lines], [r["loss"] for r in lines], color=color, label=CELL_NAMES[cell])
    axes[0].axhline(1 / 6, color="grey", ls="--", lw=0.8, label="baseline 1/6")
    axes[0].set(xlabel="step", ylabel="training MSE", yscale="log", title=f"adding problem, T = {adding_T}")
    axes[1].set(xlabel="step", ylabel="training loss (nats/char)", title=f"char LM on pydoc, k = {lm_k}")
    axes[0].legend(fontsize=8)
    plot = save_figure(fig, ctx.plot_path)

    setup = (
        f"Two tasks, each cell with the same hidden size and budget. Adding problem: recipe `adding-lstm` (T = "
        f"{adding_T}, H = {adding_hidden}, Adam 3e-3, batch 50, clip 1, {adding_steps} steps), test MSE. Character "
        f"language model: recipe `charlm-pydoc` with one layer of H = {lm_hidden} (embedding 64), k = {lm_k}, "
        f"{'10 steps' if quick else 'one epoch'}, validation perplexity. *Recurrent parameters*: the recurrent "
        f"layer only (embedding and output layers are the same for all three). *ms per step*: from the logged "
        f"training throughput (median over logging intervals), one thread."
    )
    references = [
        "Chung, Gulcehre, Cho & Bengio 2014: GRU and LSTM comparable, both well ahead of the tanh RNN on speech; "
        "GRU best on most music sets (JSB Chorales test NLL 8.54).",
        "Parameters in torch's layout: GRU 3·(H·(I+H) + 2H), LSTM 4·(H·(I+H) + 2H) — exactly 3/4.",
        "Bai, Kolter & Koltun 2018, Table 1: sequential MNIST — LSTM 87.2, GRU 96.2, tanh RNN 21.5 % accuracy.",
    ]
    return ctx.result(setup, [table], checks, references, plot)


# ------------------------------------------------------------------------------------------ truncated-bptt

BPTT_LENGTHS = (10, 35, 100)
STREAM_TOKENS = 13_086  # tokens per stream of the pydoc training text at B = 32 (the task logs it)


@experiment("truncated-bptt", "truncated BPTT: a shorter k gives cheaper updates; the carried state keeps context")
def truncated_bptt(ctx: Context):
    from dnn.run import resolve_config
    from dnn.tasks import make_task

    hidden, epochs, steps = (16, 1, 5) if ctx.quick else (128, 3, 0)
    table = Table(
        f"Character LSTM language model on pydoc (one layer, H = {hidden}), the same {epochs} epoch(s) for each k",
        ["k", "steps", "ms per step", "seconds", "valid perplexity (state carried)",
         "valid perplexity (state reset every k)", "reset ÷ carried", "test perplexity", "test bits/char"],
    )  # fmt: skip
    runs: dict[int, Run] = {}
    reset_ratio: dict[int, float] = {}
    for k in BPTT_LENGTHS:
        eval_every = 2 if ctx.quick else max(1, STREAM_TOKENS // k // 4)
        overrides = _lm_overrides("lstm", k, hidden, steps, eval_every, epochs)
        run = runs[k] = ctx.train(f"k{k}", "charlm-pydoc", overrides)
        task = make_task(resolve_config("charlm-pydoc", overrides))
        task.prepare(lambda message: None)
        reset = task.evaluate(run.model(), "valid", carry=False)["perplexity"]
        carried = run.results["valid"]["perplexity"]
        reset_ratio[k] = reset / carried
        table.add(**{"k": k, "steps": run.steps, "ms per step": run.ms_per_step(32 * k), "seconds": run.seconds,
                     "valid perplexity (state carried)": carried, "valid perplexity (state reset every k)": reset,
                     "reset ÷ carried": reset_ratio[k], "test perplexity": run.results["test"]["perplexity"],
                     "test bits/char": run.results["test"]["bits_per_char"]})  # fmt: skip

    ms = table.column("ms per step")
    ranking = sorted(BPTT_LENGTHS, key=lambda k: runs[k].results["valid"]["perplexity"])
    checks = [
        Check("a step costs more the longer k is (ms per step increases with k)", ms[0] < ms[1] < ms[2],
              " < ".join(f"{m:.1f}" for m in ms) + " ms"),
        Check("the carried state carries context: resetting it every k characters costs more at k = 10 than at "
              "k = 100", reset_ratio[10] > reset_ratio[100],
              f"reset ÷ carried {reset_ratio[10]:.3f} (k = 10) vs {reset_ratio[100]:.3f} (k = 100)"),
    ]  # fmt: skip

    fig, axes = figure(2)
    for k, color in zip(BPTT_LENGTHS, ("C3", "C1", "C0")):
        evals = runs[k].metrics("eval")
        axes[0].plot([r["step"] * 32 * k for r in evals], [r["perplexity"] for r in evals], "o-", color=color,
                     label=f"k = {k}")  # fmt: skip
    axes[0].set(xlabel="characters read in training", ylabel="validation perplexity", yscale="log",
                title="the same text, different truncation")  # fmt: skip
    axes[0].legend(fontsize=8)
    axes[1].bar([str(k) for k in BPTT_LENGTHS], ms, color=("C3", "C1", "C0"))
    axes[1].set(xlabel="k", ylabel="ms per optimiser step", title="cost of one update")
    plot = save_figure(fig, ctx.plot_path)

    setup = (
        f"Recipe `charlm-pydoc` (Python's pydoc topics, characters, 32 parallel streams, Adam 3e-3, clip 1) with one "
        f"LSTM layer of H = {hidden} (embedding 64), trained for "
        + (f"{steps} steps" if ctx.quick else f"{epochs} epochs")
        + f" at each BPTT length k ∈ {{{', '.join(map(str, BPTT_LENGTHS))}}}: the same characters, k times fewer "
        "updates for k times longer chunks. Validation perplexity with the state carried across chunks (how the "
        "task evaluates), and with the state reset to zero at every chunk start — what a model would lose if "
        "truncation also cut the context. Ranking by validation perplexity (reported, not asserted): "
        + " < ".join(f"k = {k}" for k in ranking)
        + "."
    )
    references = [
        "Williams & Peng 1990: truncated BPTT. Zaremba, Sutskever & Vinyals 2014 (PTB words): k = 35.",
        "nanoGPT's character model on tiny Shakespeare: validation loss 1.47 (GPU) / 1.88 (CPU, 4 layers × 128); "
        "uniform over 106 characters: ln 106 = 4.66 nats (perplexity 106).",
        "Pascanu et al. 2013, Table 1, PTB characters: 1.42 bits/char with clipping.",
    ]
    return ctx.result(setup, [table], checks, references, plot)
