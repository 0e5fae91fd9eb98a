"""The language model: a torch twin, the carried state of truncated BPTT, tied weights, and a paragraph learnt."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from dnn.decoding import sample
from dnn.errors import ConfigError
from dnn.models import create_model, model_config
from dnn.models.language import LMState
from dnn.training.callbacks import detach_state

V, E, H = 11, 6, 5


def make(seed=0, **overrides):
    config = dict(vocab_size=V, embedding_size=E, hidden_size=H, num_layers=2)
    config.update(overrides)
    torch.manual_seed(seed)
    return create_model("language_model", model_config("language_model", **config)).eval()


def tokens(B, T, seed=0):
    return torch.randint(1, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell, twin", [("lstm", nn.LSTM), ("gru", nn.GRU), ("rnn", nn.RNN)])
def test_matches_a_torch_twin(cell, twin):
    model = make(cell=cell)
    embedding, rnn, output = nn.Embedding(V, E), twin(E, H, num_layers=2, batch_first=True), nn.Linear(H, V)
    embedding.load_state_dict(model.embedding.state_dict())
    rnn.load_state_dict(model.rnn.state_dict())
    output.load_state_dict(model.output.state_dict())
    x = tokens(3, 7)
    logits, state = model(x)
    out, hidden = rnn(embedding(x))
    assert_close(logits, output(out))
    assert_close(state.hidden, hidden)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_equals_one_long_sequence(cell):
    model = make(cell=cell)
    x = tokens(2, 12, seed=1)
    whole, _ = model(x)
    state = model.init_state(2)
    chunks = []
    for s in range(0, 12, 5):  # chunks of 5, 5, 2
        logits, state = model(x[:, s : s + 5], state)
        chunks.append(logits)
        state = detach_state(state)
    assert_close(torch.cat(chunks, dim=1), whole)


def test_init_state_is_zero_and_the_same_as_none():
    model = make(cell="lstm")
    state = model.init_state(3)
    assert state.hidden[0].shape == (2, 3, H) and not state.hidden[0].any() and not state.hidden[1].any()
    x = tokens(3, 4)
    assert_close(model(x, state)[0], model(x)[0])


def test_detach_state_cuts_the_graph_and_keeps_the_values():
    model = make(cell="lstm").train()
    first, second = tokens(2, 6), tokens(2, 3, seed=2)
    _, state = model(first)
    assert state.hidden[0].requires_grad
    cut = detach_state(state)
    assert not cut.hidden[0].requires_grad and not cut.hidden[1].requires_grad
    assert torch.equal(cut.hidden[0], state.hidden[0]) and torch.equal(cut.hidden[1], state.hidden[1])
    assert detach_state(None) is None

    def grads(carried):
        model.zero_grad()
        model(second, carried)[0].sum().backward(retain_graph=True)
        return [p.grad.clone() for p in model.parameters()]

    with torch.no_grad():
        _, no_graph = model(first)
    # through the cut, the gradient is that of a state computed without a graph; uncut, it reaches chunk one
    for a, b in zip(grads(cut), grads(no_graph)):
        assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(grads(state), grads(no_graph)))


def test_decode_step_is_one_token_of_forward():
    model = make(cell="gru")
    x = tokens(3, 5, seed=3)
    logits, _ = model(x)
    state = None
    for t in range(5):
        step_logits, state, attention = model.decode_step(x[:, t], state)
        assert attention is None
        assert_close(step_logits, logits[:, t])


def test_state_index_select_reorders_the_batch():
    model = make(cell="lstm")
    x = tokens(3, 4, seed=4)
    _, state = model(x)
    order = torch.tensor([2, 2, 0])
    moved = state.index_select(order)
    assert isinstance(moved, LMState) and moved.batch_size == 3
    assert_close(moved.hidden[1], state.hidden[1][:, order])
    nxt = tokens(3, 1, seed=5)
    assert_close(model(nxt[order], moved)[0], model(nxt, state)[0][order])


def test_tied_weights_share_one_matrix():
    tied = make(embedding_size=H, tie_weights=True)
    untied = make(embedding_size=H, tie_weights=False)
    assert tied.output.weight is tied.embedding.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == V * H
    logits, _ = tied(tokens(2, 4))
    logits.sum().backward()  # the gradient of E sums its two uses: the lookup and the output layer
    assert tied.embedding.weight.grad[0].abs().sum() > 0  # <pad>'s row is never looked up, but it is an output


@pytest.mark.parametrize(
    "config, field",
    [
        (dict(tie_weights=True), "tie_weights"),  # embedding 6 ≠ hidden 5
        (dict(vocab_size=3), "vocab_size"),
        (dict(cell="transformer"), "cell"),
        (dict(num_layers=0), "num_layers"),
        (dict(forget_bias="high"), "forget_bias"),
    ],
)
def test_config_errors_name_the_field(config, field):
    with pytest.raises(ConfigError, match=field):
        create_model(
            "language_model",
            model_config("language_model", **{**dict(vocab_size=V, embedding_size=E, hidden_size=H), **config}),
        )


def test_bad_state_or_tokens_are_config_errors():
    model = make()
    with pytest.raises(ConfigError, match="state"):
        model(tokens(2, 3), model.init_state(3))
    with pytest.raises(ConfigError, match="tokens"):
        model(torch.full((2, 3), V))


PARAGRAPH = (
    "A recurrent network reads a sentence one character at a time. It keeps a hidden state, a summary of "
    "everything it has read so far, and from that state it predicts the next character. Trained on a "
    "paragraph, it learns the spelling of its words, then the order of its words, and at last it can "
    "write the paragraph out again from memory."
)


def test_learns_a_paragraph_with_truncated_bptt():
    """Character level, chunks of 64 with the state carried and detached: below 0.3 nats/char, then recites it."""
    chars = sorted(set(PARAGRAPH))
    ids = {c: i + 4 for i, c in enumerate(chars)}  # 0–3 are <pad>, <unk>, <sos>, <eos>
    data = torch.tensor([[ids[c] for c in PARAGRAPH]])  # (1, 334)
    torch.manual_seed(0)
    model = create_model(
        "language_model",
        model_config("language_model", vocab_size=len(chars) + 4, embedding_size=32, hidden_size=128, num_layers=1),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):  # epochs of 6 chunks; measured: below 0.3 after 21–22 epochs (seeds 0, 1)
        state = None
        for s in range(0, data.shape[1] - 1, 64):
            y = data[:, s + 1 : s + 65]
            logits, state = model(data[:, s : s + y.shape[1]], state)
            loss = model.loss(logits, y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            state = detach_state(state)
    model.eval()
    with torch.no_grad():
        logits, _ = model(data[:, :-1])
    assert model.loss(logits, data[:, 1:]).item() < 0.3
    recited = sample(model, data[:, :1], 80, temperature=0.0)
    assert torch.equal(recited[0], data[0, 1:81])
