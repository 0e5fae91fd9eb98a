"""The hand-written back-propagation through time, checked by finite differences (gradcheck, float64)."""

import pytest
import torch

from dnn.layers.bptt import gru_scan, lstm_scan, rnn_scan

T, B, H = 5, 3, 4


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


LENGTHS = torch.tensor([5, 2, 3])
MASK = (torch.arange(T).unsqueeze(1) < LENGTHS).unsqueeze(-1)  # (T, B, 1), as the runner builds it


@pytest.mark.parametrize("mask", [None, MASK], ids=["full", "masked"])
@pytest.mark.parametrize("relu", [False, True])
def test_rnn_scan_gradcheck(mask, relu):
    gi, h0, w = rand(T, B, H), rand(B, H), rand(H, H)
    if relu:  # keep pre-activations away from relu's kink, where finite differences are meaningless
        gi = (gi.detach().abs() + 0.5).requires_grad_(True)
        w = (w.detach().abs() * 0.3).requires_grad_(True)
        h0 = h0.detach().abs().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: rnn_scan(*a, mask=mask, relu=relu), (gi, h0, w))


@pytest.mark.parametrize("mask", [None, MASK], ids=["full", "masked"])
def test_lstm_scan_gradcheck(mask):
    args = (rand(T, B, 4 * H), rand(B, H), rand(B, H), rand(4 * H, H))
    assert torch.autograd.gradcheck(lambda *a: lstm_scan(*a, mask=mask), args)


@pytest.mark.parametrize("mask", [None, MASK], ids=["full", "masked"])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_scan_gradcheck(mask, bias):
    b_hh = rand(3 * H) if bias else None
    args = (rand(T, B, 3 * H), rand(B, H), rand(3 * H, H), b_hh)
    assert torch.autograd.gradcheck(lambda *a: gru_scan(*a, mask=mask), args)


def test_padded_steps_carry_the_state_unchanged():
    gi, h0, c0, w = (t.detach() for t in (rand(T, B, 4 * H), rand(B, H), rand(B, H), rand(4 * H, H)))
    out, h, c = lstm_scan(gi, h0, c0, w, MASK)
    torch.testing.assert_close(h[1], out[1, 1])  # length 2: the final state is the state at step 2
    torch.testing.assert_close(out[4, 1], out[1, 1])  # and it was carried through the padding
