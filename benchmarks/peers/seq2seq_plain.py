"""A plain PyTorch sequence-to-sequence script: what a user writes without dnn, the peer of ``make bench``.

The architecture of the ``translate-tsv`` recipe (dnn's ``seq2seq`` with ``cell: gru, attention: concat``),
written the usual way with torch.nn modules::

    m_1 … m_S, h_n = BiGRU(E_src[x])                       packed by length          (B, S, 2H)
    s_0 = tanh(W_b [h→_n; h←_n] + b_b)                    the bridge                (1, B, H)
    h_1 … h_T = GRU(E_tgt[<sos> y_1 … y_{T−1}], s_0)      teacher forcing           (B, T, H)
    a_t = softmax_s(vᵀ tanh(W_q h_t + W_k m_s + b))       concat (Bahdanau) score   (B, T, S)
    h̃_t = tanh(W_c [Σ_s a_{t,s} m_s; h_t])                                          (B, T, H)
    logits_t = W_o dropout(h̃_t) + b_o                                               (B, T, V)

trained with cross-entropy over the real target tokens and Adam. Run it alone on random batches::

    python benchmarks/peers/seq2seq_plain.py --steps 20 --batch 64
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, SOS, EOS = 0, 2, 3


class Seq2Seq(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, embedding: int = 256, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.src_embedding = nn.Embedding(src_vocab, embedding, padding_idx=PAD)
        self.encoder = nn.GRU(embedding, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.tgt_embedding = nn.Embedding(tgt_vocab, embedding, padding_idx=PAD)
        self.decoder = nn.GRU(embedding, hidden, batch_first=True)
        self.query_proj = nn.Linear(hidden, hidden, bias=False)
        self.key_proj = nn.Linear(2 * hidden, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.combine = nn.Linear(3 * hidden, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, tgt_vocab)

    def forward(self, src, src_lengths, tgt_in):
        S = src.shape[1]
        packed = pack_padded_sequence(self.src_embedding(src), src_lengths, batch_first=True, enforce_sorted=False)
        memory, h_n = self.encoder(packed)
        memory, _ = pad_packed_sequence(memory, batch_first=True, total_length=S)  # (B, S, 2H)
        s0 = torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], dim=-1))).unsqueeze(0)  # (1, B, H)
        h, _ = self.decoder(self.tgt_embedding(tgt_in), s0)  # (B, T, H)
        keys = self.key_proj(memory)  # (B, S, H)
        e = torch.tanh(self.query_proj(h).unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, H)
        scores = self.v(e).squeeze(-1)  # (B, T, S)
        mask = torch.arange(S) < src_lengths.unsqueeze(1)  # (B, S)
        weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
        context = torch.bmm(weights, memory)  # (B, T, 2H)
        attentional = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))  # (B, T, H)
        return self.output(self.dropout(attentional))  # (B, T, V)


def random_batch(batch: int, src_vocab: int, tgt_vocab: int, generator: torch.Generator, lo: int = 8, hi: int = 40):
    """A bucketed batch of random pairs: lengths within ±3 of a random centre, as a length-bucketing sampler gives."""
    centre = int(torch.randint(lo + 3, max(hi - 3, lo + 4), (1,), generator=generator))
    src_len = torch.randint(centre - 3, centre + 4, (batch,), generator=generator)
    tgt_len = torch.randint(centre - 3, centre + 4, (batch,), generator=generator)
    S, T = int(src_len.max()), int(tgt_len.max()) + 1
    src = torch.randint(4, src_vocab, (batch, S), generator=generator)
    src[torch.arange(S) >= src_len.unsqueeze(1)] = PAD
    tgt = torch.randint(4, tgt_vocab, (batch, T), generator=generator)
    tgt_in = torch.cat([torch.full((batch, 1), SOS), tgt[:, :-1]], dim=1)
    tgt_out = tgt.clone()
    tgt_out[torch.arange(T) == tgt_len.unsqueeze(1)] = EOS
    tgt_in[torch.arange(T) > tgt_len.unsqueeze(1)] = PAD
    tgt_out[torch.arange(T) > tgt_len.unsqueeze(1)] = -100
    return src, src_len, tgt_in, tgt_out


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch) -> float:
    src, src_lengths, tgt_in, tgt_out = batch
    logits = model(src, src_lengths, tgt_in)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=-100)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = Seq2Seq(args.vocab, args.vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [random_batch(args.batch, args.vocab, args.vocab, g) for _ in range(8)]
    train_step(model, optimizer, batches[0])
    start = time.perf_counter()
    for k in range(args.steps):
        loss = train_step(model, optimizer, batches[k % len(batches)])
    elapsed = time.perf_counter() - start
    print(f"{args.steps / elapsed:.2f} steps/s, {args.steps * args.batch / elapsed:.0f} samples/s, loss {loss:.3f}")


if __name__ == "__main__":
    main()
