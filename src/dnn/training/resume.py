"""What a resumed run checks and takes back, and what a stopped run tells its user.

A resumed run reads its training state only if the SHA-256 the manifest recorded still matches; continues with the
config it was started with (from config.yaml, or from the manifest when it was killed before config.yaml was
written), refused if config.yaml was edited since; reads the data it began with (size and SHA-256 of every file,
refused in one line naming the file that changed); and keeps the vocabularies, classes and normalisation it was
trained with: what the data gives now is compared with them, never silently rebuilt.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dnn.errors import CheckpointError
from dnn.io import fingerprint, read_bytes_nofollow
from dnn.run_config import RunConfig
from dnn.rundir import CONFIG, LABELS, MODEL, STATE, TASK, TOKENIZER, VOCAB, RunDir
from dnn.training.checkpoint import load_state

__all__ = ["changed_data", "check_artifacts", "check_data", "check_unedited", "data_fingerprints", "kept_checkpoint",
           "saved_state", "started_config", "why_finished"]  # fmt: skip


def saved_state(files: RunDir) -> dict[str, Any] | None:
    """The run's training state, checked against the SHA-256 recorded when it was written; None if it has none."""
    return load_state(files.verified(STATE, "training state")) if files.has(STATE) else None


def kept_checkpoint(run: RunDir | None) -> str:
    """Where a run that stopped on an error can go on from: its last checkpoint."""
    try:
        step = load_state(run.verified(STATE))["stats"]["step"] if run is not None and run.has(STATE) else None
    except (CheckpointError, KeyError, TypeError):
        step = None
    if step is None:
        return ""
    return f"; the last checkpoint, {run.file(STATE)} at step {step}, is kept: continue from it with `dnn train " \
           f"--resume --run-dir {run.path}`"  # fmt: skip


def started_config(files: RunDir) -> RunConfig:
    """The config a run was started with, from its manifest: a run killed before config.yaml was written."""
    if files.source is None:
        raise CheckpointError(f"{files.path}: no {CONFIG} and no config in its manifest; nothing was trained: start "
                              f"it again with `dnn train RECIPE --run-dir {files.path}`")  # fmt: skip
    return RunConfig.from_dict(files.source)


def data_fingerprints(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """A fingerprint (size, SHA-256) of every file the run reads: data.train / valid / test / target, init_from."""
    # probe: only Seq2SeqData declares target; the other data configs read no target file
    keys = {f"data.{k}": getattr(cfg.data, k, None) for k in ("train", "valid", "test", "target")}
    keys["train.init_from"] = cfg.train.init_from
    run_files = (MODEL, CONFIG, TASK, VOCAB, TOKENIZER, LABELS)
    return {key: fingerprint(path, names=run_files if key == "train.init_from" and Path(path).is_dir() else None)
            for key, path in keys.items() if isinstance(path, str) and path}  # fmt: skip


def check_data(run: RunDir, cfg: RunConfig, resuming: bool) -> None:
    """A resumed run reads the data it began with, or stops in one line naming the file that changed."""
    current = data_fingerprints(cfg)
    changed = changed_data(run.data, current) if resuming else None
    if changed:
        raise CheckpointError(f"{changed}; a resumed run must read the data it was trained on (its vocabulary, "
                              "classes and batches come from it): restore the file, or train a new run")  # fmt: skip
    run.record_data(current)


def changed_data(recorded: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> str | None:
    """The first data file of ``current`` that differs from what the run recorded, as a message naming it."""
    for key, now in current.items():
        then = recorded.get(key)
        if then is None or then == now:
            continue
        path = then.get("path")
        if now.get("missing"):
            return f"{key}: {path} is gone since the run began"
        if path != now.get("path"):
            return f"{key}: the run read {path}, now {now.get('path')}"
        return (f"{key}: {path} changed since the run began ({then.get('size')} → {now.get('size')} bytes, SHA-256 "
                f"{then.get('sha256', '')[:12]}… → {now.get('sha256', '')[:12]}…)")  # fmt: skip
    return None


def check_artifacts(run: RunDir, task: Any) -> None:
    """What the data gives now (vocabularies, classes, normalisation) is what the run was trained with: a resumed
    run never silently rebuilds them."""
    with tempfile.TemporaryDirectory(prefix="dnn-") as tmp:
        scratch = RunDir.scratch(tmp)
        task.save_artifacts(scratch)
        for name in scratch.files:
            saved = read_bytes_nofollow(run.file(name)) if run.has(name) else None
            if saved != read_bytes_nofollow(scratch.file(name)):
                what = "missing" if saved is None else "differs from what the data gives now"
                raise CheckpointError(f"{run.file(name)}: {what}; a resumed run keeps the vocabularies, classes and "
                                      "normalisation it was trained with: restore the data (or the file), or train "
                                      "a new run")  # fmt: skip


def check_unedited(config: dict[str, Any], saved: dict[str, Any] | None, path: Path) -> None:
    """A resumed run continues with the config its checkpoint was made with: an edit of config.yaml is refused."""
    if saved is None:  # a checkpoint from before the config was saved with it
        return

    def differences(a: Any, b: Any, key: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [
                d
                for k in sorted(set(a) & set(b), key=str)  # a key only one side has: a field added since
                for d in differences(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
            ]
        return [] if a == b else [f"{key}: {b!r} → {a!r}"]

    changed = differences(config, saved, "")
    if changed:
        raise CheckpointError(f"{path} was edited after the checkpoint ({'; '.join(changed[:3])}); a resumed run "
                              "continues with the config it was trained with: undo the edit, or train a new run "
                              "with the change")  # fmt: skip


def why_finished(trainer: Any, t: Any) -> str:
    """Why training ended, as the checkpoint and results.json record it."""
    if t.max_steps and trainer.stats.step >= t.max_steps:
        return f"train.max_steps={t.max_steps} reached at step {trainer.stats.step}"
    if t.max_time and trainer.stats.elapsed >= t.max_seconds:
        return f"train.max_time={t.max_time} reached at step {trainer.stats.step} ({trainer.stats.elapsed:.0f} s)"
    if trainer.stats.epoch >= t.epochs:
        return f"{t.epochs} epoch{'s' if t.epochs > 1 else ''} done, step {trainer.stats.step}"
    return f"stopped early at step {trainer.stats.step} (train.patience={t.patience})"
