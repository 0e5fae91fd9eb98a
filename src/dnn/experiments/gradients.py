"""Gradients through time: ``vanishing-gradient`` (tanh' ≤ 1 and the LSTM's highway) and ``gradient-clipping``.

Vanishing: for a cell unrolled over T steps with the loss on the last state, the gradient that reaches step t is

    ∂L/∂h_t = (∏_{s=t+1}^{T} ∂h_s/∂h_{s−1})ᵀ ∂L/∂h_T,      tanh RNN: ∂h_s/∂h_{s−1} = diag(1 − h_s²) W_hh

so its norm shrinks like η^(T−t) when every factor's norm η < 1 (Pascanu et al. 2013). The LSTM's cell state
c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t has the factor diag(f_t) on its direct path: a forget gate near 1 lets the
gradient through ("the highway"), and its bias decides where f_t starts (σ(0) = 0.5, σ(1) = 0.73).

Clipping (Pascanu et al. 2013): if ‖g‖ > τ then g ← τ g / ‖g‖, with τ between half and ten times the average
gradient norm. The trainer measures ‖g‖ before clipping at every step (:class:`dnn.training.Trainer`).
"""

from __future__ import annotations

import math
import statistics

import torch
from torch import Tensor, nn

from dnn.config import to_dict
from dnn.data.synthetic import adding_problem
from dnn.experiments.base import Check, Context, Table, figure, save_figure
from dnn.experiments.registry import experiment
from dnn.inspect.gradient_flow import gradient_norms_through_time
from dnn.layers.recurrent import GRUCell, LSTMCell, RNNCell

# ------------------------------------------------------------------------------------------ vanishing-gradient

T_MEASURE, HIDDEN, BACK = 100, 64, 50  # unroll T = 100 steps, H = 64; the claim is read 50 steps back
SEEDS = 5
# (label, cell, forget bias): the LSTM twice, with the forget-gate bias of torch (0) and of Keras and dnn (1)
CELLS = (("tanh RNN", "rnn", None), ("LSTM, forget bias 0", "lstm", 0.0), ("LSTM, forget bias 1", "lstm", 1.0),
         ("GRU", "gru", None))  # fmt: skip
PAPER_INIT = {"tanh RNN": "~5e-13", "LSTM, forget bias 0": "~2e-11 (torch init)", "LSTM, forget bias 1": "~3e-5"}


def _cell(kind: str, forget_bias: float | None) -> nn.Module:
    if kind == "rnn":
        return RNNCell(2, HIDDEN)
    if kind == "lstm":
        return LSTMCell(2, HIDDEN, forget_bias=forget_bias)
    return GRUCell(2, HIDDEN)


def _ratios(cell: nn.Module, seeds: int) -> dict[str, list[float]]:
    """Median over ``seeds`` batches of adding-problem inputs of ‖∂L/∂h_{T−d}‖ / ‖∂L/∂h_T‖ for d = 0 … T−1
    (and the same for the LSTM's cell state c)."""
    runs: dict[str, list[Tensor]] = {}
    for seed in range(seeds):
        inputs, _ = adding_problem(16, T_MEASURE, seed)  # (T, B, 2)
        for key, norms in gradient_norms_through_time(cell, inputs).items():  # (T,), index −1 = distance 0
            runs.setdefault(key, []).append(norms.flip(0) / norms[-1])  # index d = distance d
    return {key: torch.stack(r).median(dim=0).values.tolist() for key, r in runs.items()}


def _trained_cell(run_path, kind: str, forget_bias: float | None) -> nn.Module:
    """The first layer of a trained ``sequence_regressor`` as a dnn cell (same parameter names, minus ``_l0``)."""
    from dnn.run import load_run

    layer = load_run(run_path).model.rnn
    cell = _cell(kind, forget_bias)
    cell.load_state_dict({name: getattr(layer, f"{name}_l0") for name, _ in cell.named_parameters()})
    return cell


@experiment("vanishing-gradient", "tanh RNN gradients vanish exponentially through time; gated cells keep them")
def vanishing_gradient(ctx: Context):
    steps = 10 if ctx.quick else 2000
    sizes = "[200,50,50]" if ctx.quick else "[10000,1000,1000]"
    init, trained, mse = {}, {}, {}
    for label, kind, bias in CELLS:
        torch.manual_seed(0)
        init[label] = _ratios(_cell(kind, bias), SEEDS)  # a fresh cell per seed would change little: 5 input draws
    ctx.log("  measured at initialisation")
    for label, kind, bias in CELLS:
        bias_value = "null" if bias is None else bias  # null: the cell's own init (only the LSTM has the option)
        overrides = [f"model.cell={kind}", f"model.hidden_size={HIDDEN}", f"model.forget_bias={bias_value}",
                     "data.length=50", f"data.sizes={sizes}", f"train.max_steps={steps}", "train.epochs=100",
                     "train.eval_every=250"]  # fmt: skip
        run = ctx.train(label.replace(", ", "-").replace(" ", "-").lower(), "adding-lstm", overrides)
        trained[label] = _ratios(_trained_cell(run.path, kind, bias), 1 if ctx.quick else SEEDS)
        mse[label] = run.results["test"]["mse"]

    at_init = Table(
        f"At initialisation: ‖∂L/∂h_(T−d)‖ / ‖∂L/∂h_T‖, median of {SEEDS} input batches (T = {T_MEASURE}, "
        f"H = {HIDDEN})",
        ["cell", "h, d = 10", "h, d = 50", "h, d = 99", "c, d = 50", "paper/PyTorch reference, h, d = 50"],
    )
    after = Table(
        f"After {steps} steps on the adding problem (T = 50, H = {HIDDEN}), measured through T = {T_MEASURE}",
        ["cell", "test MSE", "h, d = 10", "h, d = 50", "c, d = 50"],
    )
    for label, _, _ in CELLS:
        r = init[label]
        at_init.add(**{"cell": label, "h, d = 10": r["h"][10], "h, d = 50": r["h"][BACK], "h, d = 99": r["h"][99],
                       "c, d = 50": r["c"][BACK] if "c" in r else None,
                       "paper/PyTorch reference, h, d = 50": PAPER_INIT.get(label, "–")})  # fmt: skip
        t = trained[label]
        after.add(**{"cell": label, "test MSE": mse[label], "h, d = 10": t["h"][10], "h, d = 50": t["h"][BACK],
                     "c, d = 50": t["c"][BACK] if "c" in t else None})  # fmt: skip

    rnn, b0, b1 = (init[label]["h"][BACK] for label in ("tanh RNN", "LSTM, forget bias 0", "LSTM, forget bias 1"))
    c1 = init["LSTM, forget bias 1"]["c"][BACK]
    trained_rnn = trained["tanh RNN"]["h"][BACK]
    checks = [
        Check("tanh RNN at init: the gradient 50 steps back < 1e-8 of the last step's", rnn < 1e-8, f"{rnn:.2e}",
              quick_ok=True),
        Check("LSTM, forget bias 0, at init: hidden-state gradient 50 steps back < 1e-6 (vanishes almost like the "
              "tanh RNN's)", b0 < 1e-6, f"{b0:.2e}", quick_ok=True),
        Check("LSTM, forget bias 1, at init: hidden-state gradient 50 steps back > 1e-5", b1 > 1e-5, f"{b1:.2e}",
              quick_ok=True),
        Check("LSTM, forget bias 1, at init: the cell state keeps ≥ 10× more than the hidden state 50 steps back",
              c1 >= 10 * b1, f"c {c1:.2e} vs h {b1:.2e} ({c1 / b1:.3g}×)", quick_ok=True),
    ]  # fmt: skip
    for label in ("GRU", "LSTM, forget bias 1"):
        value = trained[label]["h"][BACK]
        checks.append(Check(
            f"after the same training, {label} keeps ≥ 100× the tanh RNN's gradient 50 steps back",
            value >= 100 * trained_rnn, f"{value:.2e} vs {trained_rnn:.2e}",
        ))  # fmt: skip

    fig, axes = figure(2)
    for ax, data, title in ((axes[0], init, "at initialisation"), (axes[1], trained, f"after {steps} steps")):
        for (label, _, _), color in zip(CELLS, ("C3", "C1", "C0", "C2")):
            d = range(T_MEASURE)
            ax.semilogy(d, [max(v, 1e-30) for v in data[label]["h"]], color=color, label=f"{label}: h")
            if "c" in data[label]:
                ax.semilogy(d, [max(v, 1e-30) for v in data[label]["c"]], color=color, ls="--", label=f"{label}: c")
        ax.axhline(1e-8, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="steps back from the loss (d)", ylabel="‖∂L/∂state_(T−d)‖ / ‖∂L/∂state_T‖", title=title)
    axes[0].legend(fontsize=7)
    plot = save_figure(fig, ctx.plot_path)

    setup = (
        f"dnn's own cells (`dnn.layers.recurrent`) unrolled over T = {T_MEASURE} steps of adding-problem inputs "
        f"(batch 16), H = {HIDDEN}, loss = sum of the last hidden state; `dnn.inspect.gradient_flow."
        f"gradient_norms_through_time` reads ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖ for the LSTM) at every step; the table shows "
        f"the ratio to the last step, median over {SEEDS} input batches. Then each cell is trained as a "
        f"`sequence_regressor` on the adding problem (recipe `adding-lstm`: T = 50, Adam 3e-3, batch 50, clip 1, "
        f"{steps} steps) and measured again with its trained weights."
    )
    references = [
        "Pascanu, Mikolov & Bengio 2013: the gradient shrinks like η^(t−k), η < 1, when the recurrent matrix's "
        "largest singular value is below 1/γ (γ = 1 for tanh).",
        "Arjovsky, Shah & Bengio 2016, Fig. 4: at initialisation the tanh RNN and the LSTM have exponentially "
        "vanishing ‖∂C/∂h_t‖ on the adding problem.",
        "Measured with PyTorch (REFERENCES.md; T = 100, H = 64, 50 steps back): tanh RNN ~5e-13, LSTM with torch's "
        "init ~2e-11, LSTM with forget bias 1 ~3e-5, LSTM cell state with forget bias 2 ~0.15.",
    ]
    return ctx.result(setup, [at_init, after], checks, references, plot)


# ------------------------------------------------------------------------------------------ gradient-clipping

RADIUS, CLIP_LR, PILOT_CLIP = 1.5, 0.1, 1.0  # W_hh's spectral radius at init; plain SGD's rate; the pilot's τ
CLIP_FACTORS = (0.5, 1.0, 2.0, 10.0)  # τ = factor × the average gradient norm: Pascanu et al.'s range, both ends
SPIKE = 2.0  # a step whose loss exceeds 2× the first step's is a spike


class _Record:
    """A trainer callback keeping every step's loss and pre-clip gradient norm."""

    def __init__(self):
        self.loss: list[float] = []
        self.grad_norm: list[float] = []

    def on_step_end(self, trainer, loss, grad_norm, **_):
        self.loss.append(loss)
        self.grad_norm.append(grad_norm)


def _exploding_rnn(seed: int, quick: bool):
    """The adding-problem task and a fresh tanh-RNN regressor whose W_hh has spectral radius 1.5, as
    :func:`dnn.train.train` would build them from recipe ``adding-lstm`` with the returned overrides."""
    from dnn.models.registry import create_model
    from dnn.run import resolve_config
    from dnn.run_config import validate_model_section
    from dnn.tasks import make_task
    from dnn.training.seed import seed_everything

    sizes = "[640,100,100]" if quick else "[10000,1000,1000]"
    overrides = [f"seed={seed}", "model.cell=rnn", f"model.hidden_size={16 if quick else 64}",
                 f"data.length={20 if quick else 100}", f"data.sizes={sizes}", "train.batch_size=64",
                 "train.optimizer=sgd", "train.momentum=0", f"train.lr={CLIP_LR}"]  # fmt: skip
    cfg = resolve_config("adding-lstm", overrides)
    task = make_task(cfg)
    task.prepare(lambda message: None)
    seed_everything(seed)
    model = create_model("sequence_regressor", **to_dict(validate_model_section(cfg.model, task.model_options())))
    with torch.no_grad():
        w = model.rnn.weight_hh_l0  # (H, H)
        w.mul_(RADIUS / torch.linalg.eigvals(w).abs().max())
    return task, model, overrides


def _clip_run(seed: int, clip: float | None, steps: int, quick: bool) -> dict:
    """Plain SGD with ``clip`` (None: off) through :class:`dnn.training.Trainer` and the task's own step."""
    from dnn.training import Trainer
    from dnn.training.optim import make_optimizer
    from dnn.training.trainer import NonFiniteError

    task, model, _ = _exploding_rnn(seed, quick)
    record = _Record()
    optimizer = make_optimizer(model.parameters(), "sgd", CLIP_LR, weight_decay=0.0, momentum=0.0)
    trainer = Trainer(model, optimizer, task.step, clip_norm=clip, on_nonfinite="stop", callbacks=[record])
    nonfinite = None
    try:
        trainer.fit(task.train_batches, epochs=1000, max_steps=steps)
    except NonFiniteError:
        nonfinite = trainer.stats.step + 1
    model.eval()
    metrics = task.evaluate(model, "valid") if nonfinite is None else {}
    valid = metrics.get("mse", math.nan)
    first = record.loss[0] if record.loss else math.nan
    spike = next((i + 1 for i, loss in enumerate(record.loss) if loss > SPIKE * first), None)
    trains = nonfinite is None and spike is None and valid <= 2 * metrics.get("baseline_mse", 0.0)
    return {"nonfinite": nonfinite, "spike": spike, "valid": valid, "trains": trains, "clipped": trainer.stats.clipped,
            "record": record}  # fmt: skip


@experiment("gradient-clipping", "clipping the gradient norm tames an exploding tanh RNN")
def gradient_clipping(ctx: Context):
    seeds = 2 if ctx.quick else 5
    steps = 10 if ctx.quick else 300
    table = Table(
        f"Plain SGD (lr {CLIP_LR}) on the adding problem, tanh RNN, W_hh at spectral radius {RADIUS}, {steps} steps",
        ["seed", "clipping", "threshold τ", "non-finite at step", "loss spike at step", "clipped steps",
         "valid MSE", "trains"],
    )  # fmt: skip
    curves: dict[str, list[_Record]] = {}
    outcome: dict[str, list[bool]] = {}
    for seed in range(seeds):
        pilot = _clip_run(seed, PILOT_CLIP, steps, ctx.quick)
        average = statistics.fmean(pilot["record"].grad_norm)
        settings = [("none", None)] + [(f"{f:g}× average", f * average) for f in CLIP_FACTORS]
        settings.append((f"{PILOT_CLIP:g} (the pilot)", PILOT_CLIP))  # shown for comparison, not an expectation
        for name, clip in settings:
            r = (
                pilot
                if clip == PILOT_CLIP and name.endswith("(the pilot)")
                else _clip_run(seed, clip, steps, ctx.quick)
            )
            outcome.setdefault(name, []).append(r["trains"])
            curves.setdefault(name, []).append(r["record"])
            table.add(**{"seed": seed, "clipping": name, "threshold τ": clip, "non-finite at step": r["nonfinite"],
                         "loss spike at step": r["spike"], "clipped steps": r["clipped"], "valid MSE": r["valid"],
                         "trains": "yes" if r["trains"] else "no"})  # fmt: skip
        ctx.log(f"  seed {seed}: average gradient norm {average:.3g}; trains: "
                + ", ".join(f"{name} {'yes' if outcome[name][-1] else 'no'}" for name, _ in settings))  # fmt: skip
        _, _, overrides = _exploding_rnn(seed, ctx.quick)
        ctx.commands.append(f"# seed {seed}: the model of `dnn train adding-lstm {' '.join(overrides)}` with W_hh "
                            f"rescaled to spectral radius {RADIUS}; average gradient norm {average:.3g}")  # fmt: skip

    diverged = sum(not ok for ok in outcome["none"])
    checks = [Check(f"without clipping, most of the {seeds} seeds diverge (NaN/inf or loss spikes)",
                    diverged > seeds / 2, f"{diverged} of {seeds} diverged")]  # fmt: skip
    for f in CLIP_FACTORS:
        ok = outcome[f"{f:g}× average"]
        checks.append(Check(f"clipping at τ = {f:g}× the average gradient norm trains in every seed", all(ok),
                            f"{sum(ok)} of {seeds} trained"))  # fmt: skip

    fig, axes = figure(2)
    colors = dict(zip(curves, ("C3", "C0", "C9", "C2", "C1", "k")))
    for name, records in curves.items():
        for i, rec in enumerate(records):
            axes[0].semilogy(rec.loss, color=colors[name], lw=0.8, label=name if i == 0 else None)
            axes[1].semilogy(rec.grad_norm, color=colors[name], lw=0.8, label=name if i == 0 else None)
    axes[0].set(xlabel="step", ylabel="training MSE", title="loss (a curve that stops: NaN/inf)")
    axes[1].set(xlabel="step", ylabel="gradient norm before clipping", title="‖g‖ per step")
    axes[0].legend(fontsize=8)
    plot = save_figure(fig, ctx.plot_path)

    setup = (
        f"The adding problem of recipe `adding-lstm` (T = {20 if ctx.quick else 100}) with a tanh-RNN "
        f"`sequence_regressor` (H = {16 if ctx.quick else 64}) whose recurrent matrix is rescaled to spectral radius "
        f"{RADIUS} at initialisation, trained by `dnn.training.Trainer` with the task's own step: plain SGD (no "
        f"momentum) at lr {CLIP_LR}, batch 64, {steps} steps, {seeds} seeds; every run of a seed starts from the same "
        f"weights and sees the same batches. The *average gradient norm* is the mean pre-clip norm over the steps of "
        f"a pilot run of the same seed clipped at τ = {PILOT_CLIP:g} (dnn's recipes' default); the runs are then "
        f"clipped at {', '.join(f'{f:g}×' for f in CLIP_FACTORS)} that average (the pilot itself is listed too, for "
        f"comparison: not an expectation). A run *diverged* if a loss or "
        f"gradient became NaN/inf, a step's loss exceeded {SPIKE:g}× the first step's, or its final validation MSE "
        f"is above twice the baseline's (predicting 1); otherwise it *trains* (a tanh RNN cannot beat the baseline "
        f"at T = 100 — see `adding-problem` — so training here means reaching the baseline plateau stably)."
    )
    references = [
        "Pascanu, Mikolov & Bengio 2013: clip when ‖g‖ ≥ τ, g ← τ g/‖g‖; τ from half to ten times the average "
        "norm over a sufficiently large number of updates. Table 1, PTB characters (bits/char): SGD 1.50, "
        "SGD + clipping 1.42, + regulariser 1.41.",
        "Sutskever, Vinyals & Le 2014 clip at norm 5; Bahdanau et al. 2015 at 1.",
    ]
    return ctx.result(setup, [table], checks, references, plot)
