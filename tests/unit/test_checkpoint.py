import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from dnn.errors import CheckpointError
from dnn.training.checkpoint import (
    atomic_write,
    load_state,
    load_weights,
    rng_state,
    save_state,
    save_weights,
    set_rng_state,
)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10)
        self.out.weight = self.embedding.weight  # tied weights: one tensor under two names


def test_weights_round_trip_with_tied_parameters(tmp_path):
    a, b = Tied(), Tied()
    save_weights(a, tmp_path / "model.safetensors")
    load_weights(b, tmp_path / "model.safetensors")
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    assert b.out.weight is b.embedding.weight


def test_weights_that_do_not_fit_are_a_one_line_checkpoint_error(tmp_path):
    save_weights(nn.Linear(3, 2), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="does not fit this model|do not match"):
        load_weights(nn.Linear(4, 2), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"missing 4 \(e.g. 0.bias\); unexpected 2"):
        load_weights(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)), tmp_path / "w.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_weights(nn.Linear(3, 2), tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_weights(nn.Linear(3, 2), tmp_path / "absent.safetensors")


def test_rng_state_restores_every_generator_and_loads_with_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_state({"rng": rng_state(), "step": 7}, tmp_path / "state.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    state = load_state(tmp_path / "state.pt")
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert state["step"] == 7


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_state_files_that_would_unpickle_code_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "state.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CheckpointError, match="not a readable training state"):
        load_state(path)


def test_a_crash_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.pt"
    save_state({"step": 1}, path)

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_state(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_written_files_follow_the_umask_not_the_private_mode_of_a_temporary_file(tmp_path):
    import os

    from dnn.training.checkpoint import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "report.html", lambda tmp: open(tmp, "w").write("<p>hi</p>"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
