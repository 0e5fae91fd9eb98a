"""dnn's RNN / LSTM / GRU against torch's own modules: outputs, final states and every parameter gradient.

The torch module is the oracle: weights are copied from ours into it with ``load_state_dict(strict=True)``, the
same input runs through torch, our fused path and our reference (step-by-step) path, and all three must agree.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dnn.errors import ConfigError
from dnn.layers.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

I, H, T, B = 3, 4, 6, 3
LENGTHS = torch.tensor([6, 2, 4])  # unsorted, one full-length, one short
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}

OURS = {"rnn_tanh": RNN, "rnn_relu": RNN, "lstm": LSTM, "gru": GRU}
TORCH = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def make_pair(kind, num_layers, bidirectional, batch_first, dtype=torch.float64, seed=0):
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    extra = {"nonlinearity": kind.split("_")[1]} if kind.startswith("rnn") else {}
    torch.manual_seed(seed)
    ours = OURS[kind](I, H, **kw, **extra).to(dtype)
    theirs = TORCH[kind](I, H, **kw, **extra).to(dtype)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def run_torch(module, x, hx, lengths, batch_first):
    """torch's module on a padded batch: pack when lengths are given, exactly as a torch user would."""
    if lengths is None:
        return module(x, hx)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, state = module(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return out, state


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def loss_of(out, state):
    # weight every element differently so that a wrong permutation cannot cancel out
    total = (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view_as(out)).sum()
    for s in flat(state):
        total = total + (s * torch.linspace(-1.0, 1.0, s.numel(), dtype=s.dtype).view_as(s)).sum()
    return total


def outputs_and_grads(module, x, hx, lengths, batch_first, ours):
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    hx = None if hx is None else tuple(h.detach().clone().requires_grad_(True) for h in hx)
    hx_arg = None if hx is None else (hx if isinstance(module, (LSTM, nn.LSTM)) else hx[0])
    if ours:
        out, state = module(x, hx_arg, lengths=lengths)
    else:
        out, state = run_torch(module, x, hx_arg, lengths, batch_first)
    loss_of(out, state).backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    extra = [x.grad] + ([] if hx is None else [h.grad for h in hx])
    return out.detach(), [s.detach() for s in flat(state)], grads, extra


GRID = list(
    itertools.product(
        ["rnn_tanh", "rnn_relu", "lstm", "gru"], [1, 2, 3], [False, True], [False, True], [False, True], [False, True]
    )
)


@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,with_lengths,with_hx", GRID)
def test_reference_fused_and_torch_agree(kind, num_layers, bidirectional, batch_first, with_lengths, with_hx):
    dtype = torch.float64
    ours, theirs = make_pair(kind, num_layers, bidirectional, batch_first, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=g, dtype=dtype)
    LD = num_layers * (2 if bidirectional else 1)
    n_states = 2 if kind == "lstm" else 1
    hx = tuple(torch.randn(LD, B, H, generator=g, dtype=dtype) for _ in range(n_states)) if with_hx else None
    lengths = LENGTHS if with_lengths else None

    expected = outputs_and_grads(theirs, x, hx, lengths, batch_first, ours=False)
    for implementation in ("reference", "fused"):
        ours.implementation = implementation
        got = outputs_and_grads(ours, x, hx, lengths, batch_first, ours=True)
        torch.testing.assert_close(got[0], expected[0], **TOL[dtype], msg=f"{implementation}: output")
        for a, b in zip(got[1], expected[1]):
            torch.testing.assert_close(a, b, **TOL[dtype], msg=f"{implementation}: final state")
        assert got[2].keys() == expected[2].keys()
        for name in expected[2]:
            torch.testing.assert_close(got[2][name], expected[2][name], **TOL[dtype], msg=f"{implementation}: {name}")
        for a, b in zip(got[3], expected[3]):
            torch.testing.assert_close(a, b, **TOL[dtype], msg=f"{implementation}: input/state gradient")
        if with_lengths:
            out = got[0] if not batch_first else got[0].transpose(0, 1)  # (T, B, D·H)
            for b, n in enumerate(LENGTHS.tolist()):
                assert torch.count_nonzero(out[n:, b]) == 0, "outputs past a sequence's length must be exactly 0"


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("implementation", ["reference", "fused"])
def test_float32_agrees_with_torch(kind, implementation):
    ours, theirs = make_pair(kind, 2, True, False, torch.float32)
    ours.implementation = implementation
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(2))
    expected = outputs_and_grads(theirs, x, None, LENGTHS, False, ours=False)
    got = outputs_and_grads(ours, x, None, LENGTHS, False, ours=True)
    torch.testing.assert_close(got[0], expected[0], **TOL[torch.float32])
    for name in expected[2]:
        torch.testing.assert_close(got[2][name], expected[2][name], **TOL[torch.float32])


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_unbatched_input_matches_torch(kind):
    ours, theirs = make_pair(kind, 2, True, False)
    x = torch.randn(T, I, dtype=torch.float64)
    for implementation in ("reference", "fused"):
        ours.implementation = implementation
        out, state = ours(x)
        ref_out, ref_state = theirs(x)
        torch.testing.assert_close(out, ref_out)
        for a, b in zip(flat(state), flat(ref_state)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_sequence(cls, bidirectional):
    """A sequence alone and inside a padded batch give the same outputs and final state."""
    torch.manual_seed(0)
    rnn = cls(I, H, num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    short = torch.randn(1, 3, I, dtype=torch.float64)
    batch = torch.cat([torch.cat([short, torch.randn(1, 4, I, dtype=torch.float64) * 100], 1),
                       torch.randn(1, 7, I, dtype=torch.float64)])  # fmt: skip
    for implementation in ("reference", "fused"):
        rnn.implementation = implementation
        alone, alone_state = rnn(short)
        padded, padded_state = rnn(batch, lengths=torch.tensor([3, 7]))
        torch.testing.assert_close(padded[:1, :3], alone)
        assert torch.count_nonzero(padded[0, 3:]) == 0
        for a, b in zip(flat(alone_state), flat(padded_state)):
            torch.testing.assert_close(b[:, :1], a)


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_residual_reference_equals_fused_and_adds_the_skip(cls):
    torch.manual_seed(0)
    rnn = cls(I, H, num_layers=3, bidirectional=True, residual=True).double()
    plain = cls(I, H, num_layers=3, bidirectional=True).double()
    plain.load_state_dict(rnn.state_dict(), strict=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    results = {}
    for implementation in ("reference", "fused"):
        rnn.implementation = implementation
        results[implementation] = outputs_and_grads(rnn, x, None, LENGTHS, False, ours=True)
    ref, fused = results["reference"], results["fused"]
    torch.testing.assert_close(ref[0], fused[0], **TOL[torch.float64])
    for name in ref[2]:
        torch.testing.assert_close(ref[2][name], fused[2][name], **TOL[torch.float64])
    # the skip connection really is there: the first layer alone is unchanged, the stack is not
    assert not torch.allclose(rnn(x)[0], plain(x)[0])


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    rnn = LSTM(I, H, num_layers=2, dropout=0.5).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    rnn.eval()
    for implementation in ("reference", "fused"):
        rnn.implementation = implementation
        torch.testing.assert_close(rnn(x)[0], rnn(x)[0])
    rnn.train()
    assert not torch.allclose(rnn(x)[0], rnn(x)[0])


@pytest.mark.parametrize("ours_cls,torch_cls", [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trips_with_torch(ours_cls, torch_cls, bias):
    ours = ours_cls(5, 7, num_layers=2, bidirectional=True, bias=bias)
    theirs = torch_cls(5, 7, num_layers=2, bidirectional=True, bias=bias)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("ours_cls,torch_cls", [(RNNCell, nn.RNNCell), (LSTMCell, nn.LSTMCell), (GRUCell, nn.GRUCell)])
def test_cells_match_torch_cells(ours_cls, torch_cls):
    torch.manual_seed(0)
    ours, theirs = ours_cls(I, H).double(), torch_cls(I, H).double()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(B, I, dtype=torch.float64)
    hx = torch.randn(B, H, dtype=torch.float64)
    state = (hx, torch.randn(B, H, dtype=torch.float64)) if ours_cls is LSTMCell else hx
    for got, want in zip(flat(ours(x, state)), flat(theirs(x, state))):
        torch.testing.assert_close(got, want)
    for got, want in zip(flat(ours(x)), flat(theirs(x))):  # zero initial state
        torch.testing.assert_close(got, want)


def test_rnn_cell_relu_matches_torch():
    ours, theirs = RNNCell(I, H, nonlinearity="relu").double(), nn.RNNCell(I, H, nonlinearity="relu").double()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x, h = torch.randn(B, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    torch.testing.assert_close(ours(x, h), theirs(x, h))


@pytest.mark.parametrize("cell", [RNNCell(I, H), RNNCell(I, H, nonlinearity="relu"), LSTMCell(I, H), GRUCell(I, H)])
def test_cells_gradcheck(cell):
    cell = cell.double()
    x = torch.randn(2, I, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    params = tuple(cell.parameters())
    if isinstance(cell, LSTMCell):
        c = torch.randn(2, H, dtype=torch.float64, requires_grad=True)

        def f(x, h, c, *p):
            return torch.func.functional_call(cell, dict(zip([n for n, _ in cell.named_parameters()], p)), (x, (h, c)))

        assert torch.autograd.gradcheck(f, (x, h, c, *params))
    else:

        def f(x, h, *p):
            return torch.func.functional_call(cell, dict(zip([n for n, _ in cell.named_parameters()], p)), (x, h))

        assert torch.autograd.gradcheck(f, (x, h, *params))


def test_gru_has_exactly_three_quarters_of_an_lstms_parameters():
    for layers, bidirectional, (i, h) in itertools.product([1, 3], [False, True], [(3, 4), (128, 64), (300, 512)]):
        n_lstm = sum(p.numel() for p in LSTM(i, h, layers, bidirectional=bidirectional).parameters())
        n_gru = sum(p.numel() for p in GRU(i, h, layers, bidirectional=bidirectional).parameters())
        assert 4 * n_gru == 3 * n_lstm
    # and the closed form 4·(H·(I+H) + 2H) for one LSTM layer
    assert sum(p.numel() for p in LSTM(128, 64).parameters()) == 4 * (64 * (128 + 64) + 2 * 64)


def test_forget_bias_sets_the_total_initial_forget_gate_bias():
    lstm = LSTM(I, H, num_layers=2, bidirectional=True, forget_bias=1.0)
    for name in ("l0", "l1", "l0_reverse", "l1_reverse"):
        total = getattr(lstm, f"bias_ih_{name}") + getattr(lstm, f"bias_hh_{name}")
        torch.testing.assert_close(total[H : 2 * H], torch.ones(H))
    cell = LSTMCell(I, H, forget_bias=2.0)
    torch.testing.assert_close((cell.bias_ih + cell.bias_hh)[H : 2 * H], torch.full((H,), 2.0))
    # None keeps torch's uniform initialisation: the forget bias is not a constant
    torch_init = LSTM(I, 64, forget_bias=None)
    assert (torch_init.bias_ih_l0 + torch_init.bias_hh_l0)[64:128].std() > 0.05


def test_auto_runs_fused_and_reference_is_selectable():
    assert LSTM(I, H).uses_fused
    assert LSTM(I, H, residual=True, num_layers=2).uses_fused
    assert not LSTM(I, H, implementation="reference").uses_fused


@pytest.mark.parametrize(
    "cell, lengths, grad, expected",
    [
        ("gru", None, True, "scan"),  # torch has no fused GRU on a CPU: the scan trains faster
        ("gru", None, False, "torch"),  # inference keeps no activations in torch's kernel
        ("lstm", None, True, "torch"),  # oneDNN's LSTM
        ("lstm", [20, 19, 18, 20], True, "scan"),  # 4% padding: torch would run packed, step by step
        ("gru", [20, 19, 18, 20], True, "scan"),
        ("lstm", [20, 5, 6, 20], True, "torch"),  # 36% padding: the packed kernel skips it, the scan does not
        ("lstm", [20, 19, 18, 20], False, "torch"),
    ],
)
def test_auto_picks_the_path_measured_faster(monkeypatch, cell, lengths, grad, expected):
    import dnn.layers.recurrent as recurrent

    ran = []
    for name, label in (("scan_layer", "scan"), ("fused_kernel", "torch")):
        original = getattr(recurrent, name)
        monkeypatch.setattr(recurrent, name, lambda *a, _o=original, _l=label: ran.append(_l) or _o(*a))
    module = (GRU if cell == "gru" else LSTM)(5, 7, bidirectional=True)
    x = torch.randn(20, 4, 5)
    with torch.set_grad_enabled(grad):
        module(x, lengths=None if lengths is None else torch.tensor(lengths))
    assert set(ran) == {expected}
    if grad:  # under autocast (and on CUDA) torch's kernels run: the scan's in-place buffers are fp32/fp64 only
        from dnn.layers.recurrent_kernels import scan_is_faster

        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not scan_is_faster(cell.upper(), x, None if lengths is None else torch.tensor(lengths), True)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: LSTM(0, 4), "input_size"),
        (lambda: LSTM(3, -1), "hidden_size"),
        (lambda: GRU(3, 4, num_layers=0), "num_layers"),
        (lambda: RNN(3, 4, nonlinearity="sigmoid"), "nonlinearity"),
        (lambda: LSTM(3, 4, dropout=1.5), "dropout"),
        (lambda: LSTM(3, 4, implementation="cuda"), "implementation"),
        (lambda: LSTM(3, 4, forget_bias="one"), "forget_bias"),
        (lambda: LSTMCell(3, 4, forget_bias="one"), "forget_bias"),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_bad_forward_inputs_name_what_is_wrong():
    lstm = LSTM(I, H)
    x = torch.randn(T, B, I)
    with pytest.raises(ConfigError, match="input_size=3"):
        lstm(torch.randn(T, B, I + 1))
    with pytest.raises(ConfigError, match="lengths must lie in"):
        lstm(x, lengths=torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigError, match="lengths must lie in"):
        lstm(x, lengths=torch.tensor([7, 1, 2]))
    with pytest.raises(ConfigError, match=r"lengths must be an integer tensor of shape \(3,\)"):
        lstm(x, lengths=torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match="h_0 must have shape"):
        lstm(x, (torch.zeros(1, B + 1, H), torch.zeros(1, B, H)))
    with pytest.raises(ConfigError, match="tuple"):
        lstm(x, torch.zeros(1, B, H))
