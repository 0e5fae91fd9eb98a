"""Decoding strategies: free functions over a model's ``encode`` / ``decode_step`` (as Joey NMT's search.py).

A model decodes with these functions if it has::

    encode(src (B, S), src_lengths (B,)) -> state                 (greedy and beam_search need it)
    decode_step(prev_token (B,), state) -> (logits (B, V), state, attention (B, S) | None)
    state.index_select(indices)                                   (beam search: reorder along the batch)

:class:`~dnn.models.seq2seq.Seq2Seq` has all three; :class:`~dnn.models.language.LanguageModel` has
``decode_step`` and samples text with :func:`sample`. Decoding starts from ``<sos>`` = 2 and a hypothesis ends at
``<eos>`` = 3 or at ``max_len`` tokens. The functions run under ``torch.no_grad()`` and leave the model's mode
alone: call ``model.eval()`` first.

Scores are log-probabilities, summed over the generated tokens up to and including ``<eos>``::

    log p(y | x) = Σ_{t=1..n} log softmax(logits_t)[y_t]

Beam search ranks finished hypotheses by ``log p(y | x) / lp(n)`` with n = len(y) (<eos> included) and

    lp(n) = ((5 + n) / 6)^α      penalty="gnmt"  (Wu et al. 2016, GNMT)
    lp(n) = n^α                  penalty="simple"

α = 0 gives lp = 1: pure log-probabilities, which favour short outputs; α ≈ 0.6–1 offsets that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from dnn.checks import choice, is_number, number_in, positive_int
from dnn.errors import ConfigError
from dnn.io import EOS_ID, PAD_ID, SOS_ID

__all__ = ["GreedyResult", "Hypothesis", "beam_search", "greedy", "length_penalty_factor", "sample"]

PENALTIES = ("gnmt", "simple")
MIN_TEMPERATURE = 1e-3  # below it, logits / T overflows fp32 for ordinary logits (1e-45 is a denormal)


class GreedyResult(NamedTuple):
    tokens: Tensor  # (B, L): y_1 … y_n <eos>, then <pad>; L ≤ max_len (stops once every sentence has ended)
    scores: Tensor  # (B,): log p(y | x) up to and including <eos>
    attention: Tensor | None  # (B, L, S), 0 after <eos>; None for a model without attention


@dataclass(frozen=True, eq=False)
class Hypothesis:
    tokens: Tensor  # (n,): y_1 … y_n, ending with <eos> unless cut at max_len
    score: float  # log p(y | x) / lp(n)
    attention: Tensor | None  # (n, S_b): the weights over the sentence's own source tokens


def length_penalty_factor(length: int, alpha: float, penalty: str = "gnmt") -> float:
    """lp(n): ((5 + n) / 6)^α for "gnmt", n^α for "simple" (see the module docstring)."""
    if penalty == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    return float(length) ** alpha


@torch.no_grad()
def greedy(
    model, src: Tensor, src_lengths: Tensor | None, max_len: int, sos_id: int = SOS_ID, eos_id: int = EOS_ID
) -> GreedyResult:
    """Greedy decoding: y_t = argmax p(y | y_<t, x), until <eos> or ``max_len`` tokens.

    Returns tokens ``(B, L)``, scores ``(B,)`` and attention ``(B, L, S)`` (None without attention).
    """
    positive_int("max_len", max_len)
    state = model.encode(src, src_lengths)
    B = src.shape[0]
    prev = torch.full((B,), sos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    scores = torch.zeros(B, device=src.device)
    tokens, attention = [], []
    for _ in range(max_len):
        logits, state, weights = model.decode_step(prev, state)  # (B, V), ..., (B, S)
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # (B, V)
        best, token = logp.max(dim=-1)  # (B,), (B,)
        token = token.masked_fill(finished, PAD_ID)
        scores += best.masked_fill(finished, 0.0)
        tokens.append(token)
        if weights is not None:
            attention.append(weights.float().masked_fill(finished.unsqueeze(1), 0.0))
        finished |= token == eos_id
        prev = token
        if bool(finished.all()):
            break
    return GreedyResult(torch.stack(tokens, dim=1), scores, torch.stack(attention, dim=1) if attention else None)


@torch.no_grad()
def beam_search(
    model,
    src: Tensor,
    src_lengths: Tensor | None,
    beam_size: int,
    max_len: int,
    length_penalty: float = 0.0,
    n_best: int = 1,
    *,
    penalty: str = "gnmt",
    sos_id: int = SOS_ID,
    eos_id: int = EOS_ID,
) -> list[list[Hypothesis]]:
    """Beam search over a batch of sentences at once; returns, per sentence, its ``n_best`` hypotheses, best first.

    Each sentence keeps K = ``beam_size`` live hypotheses. A step extends each by every token of the vocabulary
    and keeps the K best candidates by raw log-probability; a kept candidate that ends with <eos> (or reaches
    ``max_len``) moves to the sentence's finished list, scored log p / lp(n) (``length_penalty`` = α), and its
    beam slot is dead from then on, while the rest of the beam goes on. A sentence stops when no live
    hypothesis is left, or when it has ``n_best`` finished ones and none of its live hypotheses can still beat
    the n-th: a live raw score s ≤ 0 only falls, so s / lp(max_len) bounds every score it can reach. With
    K = 1 this is greedy decoding; with K at least the number of candidates per step it is exhaustive search.

    All sentences step together: the model sees B·K rows (sentence b's beams are rows b·K … b·K + K − 1), so
    one matrix product serves the whole batch. A stopped sentence leaves the batch at once, and the rest decode
    on as if it had never been there: every sentence gets the hypotheses it would get alone.
    """
    K = positive_int("beam_size", beam_size)
    positive_int("max_len", max_len)
    if positive_int("n_best", n_best) > K:
        raise ConfigError(f"n_best must be at most beam_size ({K}), got {n_best}")
    choice("penalty", penalty, PENALTIES)
    number_in("length_penalty (α)", length_penalty, 0)

    device = src.device
    B = src.shape[0]
    src_len = [src.shape[1]] * B if src_lengths is None else [int(n) for n in src_lengths]
    state = model.encode(src, src_lengths).index_select(torch.arange(B, device=device).repeat_interleave(K))
    active = list(range(B))  # the sentences still in the batch, in row order
    live = torch.full((B, K), float("-inf"), device=device)  # raw log p of the live hypotheses (B_a, K)
    live[:, 0] = 0.0  # one start hypothesis per sentence: <sos>
    prev = torch.full((B * K,), sos_id, dtype=torch.long, device=device)  # (B_a·K,)
    history = torch.empty(B * K, 0, dtype=torch.long, device=device)  # (B_a·K, t)
    attn_history: Tensor | None = None  # (B_a·K, t, S)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    bound_lp = length_penalty_factor(max_len, length_penalty, penalty)

    for t in range(1, max_len + 1):
        logits, state, weights = model.decode_step(prev, state)  # (B_a·K, V), ..., (B_a·K, S)
        V = logits.shape[-1]
        # log p(y_≤t) = log p(y_<t) + log softmax(logits_t)[y_t], added in place (no second (B_a·K, V) buffer);
        # bf16/fp16 logits become fp32 inside the softmax kernel, not in a pass of their own
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # (B_a·K, V)
        candidates = logp.add_(live.view(-1, 1)).view(-1, K * V)  # (B_a, K·V)
        scores, ids = candidates.topk(K, dim=1)  # (B_a, K)
        parent, token = ids // V, ids % V  # (B_a, K) each

        ended = (token == eos_id) if t < max_len else torch.ones_like(token, dtype=torch.bool)  # (B_a, K)
        ended &= torch.isfinite(scores)
        live = scores.masked_fill(ended, float("-inf"))
        lp = length_penalty_factor(t, length_penalty, penalty)
        rows = torch.arange(len(active), device=device).unsqueeze(1) * K + parent  # (B_a, K) rows of the parents
        for i, k in ended.nonzero().tolist():
            row = int(rows[i, k])
            b = active[i]
            attn = None
            if weights is not None:
                attn = weights[row, : src_len[b]].float().unsqueeze(0)  # (1, S_b)
                if attn_history is not None:
                    attn = torch.cat([attn_history[row, :, : src_len[b]], attn])  # (t, S_b)
            tokens = torch.cat([history[row], token[i, k].view(1)])  # (t,)
            finished[b].append(Hypothesis(tokens, float(scores[i, k]) / lp, attn))

        best_live = live.max(dim=1).values.tolist()  # (B_a,)
        keep = []
        for i, b in enumerate(active):
            if not math.isfinite(best_live[i]):
                continue  # no live hypothesis left
            if len(finished[b]) >= n_best:
                nth = sorted((h.score for h in finished[b]), reverse=True)[n_best - 1]
                if nth >= best_live[i] / bound_lp:
                    continue  # no live hypothesis can still beat the n-th finished one
            keep.append(i)
        if not keep:
            break
        if len(keep) < len(active):  # stopped sentences leave the batch
            index = torch.tensor(keep, device=device)
            active = [active[i] for i in keep]
            live, rows, token = live[index], rows[index], token[index]  # (B_a', K)
        rows = rows.view(-1)  # (B_a'·K,)
        history = torch.cat([history.index_select(0, rows), token.view(-1, 1)], dim=1)  # (B_a'·K, t)
        if weights is not None:
            step = weights.float().index_select(0, rows).unsqueeze(1)  # (B_a'·K, 1, S)
            attn_history = step if attn_history is None else torch.cat([attn_history.index_select(0, rows), step], 1)
        state = state.index_select(rows)
        prev = token.view(-1)

    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:n_best] for hyps in finished]


def _choose(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None, generator) -> Tensor:
    """Draw one token per row of ``logits (B, V)`` from softmax(logits / T), restricted to top-k / top-p."""
    if temperature == 0:
        return logits.argmax(dim=-1)  # the limit T → 0: greedy
    logits = logits.float() / temperature  # (B, V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        # nucleus (Holtzman et al. 2020): the smallest set of most likely tokens whose mass reaches p
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above; 0 for the first
        drop_sorted = mass_before >= top_p
        drop_sorted[:, 0] = False  # the most likely token always stays, however small p (1e-300 is 0 in fp32)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)


@torch.no_grad()
def sample(
    model,
    prompt_tokens: Tensor,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    *,
    state=None,
    eos_id: int | None = None,
) -> Tensor:
    """Generate ``length`` tokens after ``prompt_tokens (B, P)``: y_t ~ softmax(logits_t / T) (top-k / top-p).

    The prompt is fed through ``decode_step`` from ``state`` (None: the model's zero state; for a seq2seq model
    pass ``model.encode(src, lengths)`` and a prompt of <sos>). ``temperature`` = 0 takes the argmax (greedy);
    ``top_k`` keeps the k most likely tokens, ``top_p`` the smallest set whose probability reaches p. With
    ``eos_id``, a sequence that has produced it continues with <pad>. Returns the new tokens ``(B, length)``.
    """
    positive_int("length", length)
    if (
        not is_number(temperature)
        or not math.isfinite(temperature)
        or (temperature != 0 and not temperature >= MIN_TEMPERATURE)
    ):
        raise ConfigError(
            f"temperature must be 0 (greedy) or a finite number ≥ {MIN_TEMPERATURE:g}, got {temperature!r}"
        )
    if top_k is not None:
        positive_int("top_k", top_k)
    if top_p is not None:
        number_in("top_p", top_p, 0, 1, low_open=True)
    if not isinstance(prompt_tokens, Tensor) or prompt_tokens.dim() != 2 or prompt_tokens.shape[1] < 1:
        got = tuple(prompt_tokens.shape) if isinstance(prompt_tokens, Tensor) else type(prompt_tokens).__name__
        raise ConfigError(f"prompt_tokens must have shape (B, P) with P ≥ 1, got {got}")

    for t in range(prompt_tokens.shape[1]):
        logits, state, _ = model.decode_step(prompt_tokens[:, t], state)  # (B, V)
    finished = torch.zeros(prompt_tokens.shape[0], dtype=torch.bool, device=prompt_tokens.device)
    tokens = []
    for i in range(length):
        token = _choose(logits, temperature, top_k, top_p, generator)  # (B,)
        if eos_id is not None:
            token = token.masked_fill(finished, PAD_ID)
            finished |= token == eos_id
        tokens.append(token)
        if i + 1 < length:
            logits, state, _ = model.decode_step(token, state)
    return torch.stack(tokens, dim=1)  # (B, length)
