"""Turning examples into batches: padding and collation, length bucketing, contiguous streams for truncated BPTT,
and seeding that makes a DataLoader's order and augmentation a function of one seed.

Conventions (shared with the models): token ids are batch-first ``(B, T)`` int64 with ``<pad>`` = 0, ``<sos>`` = 2,
``<eos>`` = 3; ``lengths (B,)`` int64; masks are bool with True = real token. Targets at padded positions are
:data:`IGNORE_INDEX` (−100), the default ``ignore_index`` of :class:`torch.nn.CrossEntropyLoss`, so a loss never
sees padding.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from dnn.checks import positive_int
from dnn.errors import ConfigError, DataError
from dnn.io import EOS_ID, PAD_ID, SOS_ID

IGNORE_INDEX = -100

TokenSequence = Sequence[int] | Tensor


class _TensorFields:
    """``.to(device)`` and ``.pin_memory()`` over every tensor field of a dataclass (None fields stay None)."""

    def to(self, device: torch.device | str, non_blocking: bool = False):
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), Tensor)
            },
        )

    def pin_memory(self):
        """Called by ``DataLoader(pin_memory=True)`` for custom batch types."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name).pin_memory()
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), Tensor)
            },
        )


@dataclass
class Batch(_TensorFields):
    """A padded batch for a sequence classifier or tagger.

    tokens  (B, T) int64   token ids, ``pad_id`` after each sequence's end
    lengths (B,)   int64   real tokens per sequence
    mask    (B, T) bool    True at real tokens
    labels  (B,)   int64   class per sequence (classification), or
            (B, T) int64   tag per token, :data:`IGNORE_INDEX` at padding (tagging)
    """

    tokens: Tensor
    lengths: Tensor
    mask: Tensor
    labels: Tensor


@dataclass
class Seq2SeqBatch(_TensorFields):
    """A padded batch of (source, target) pairs for teacher forcing.

    src         (B, S) int64  source ids, ``pad_id`` padding (no specials added)
    src_lengths (B,)   int64
    src_mask    (B, S) bool   True at real tokens
    tgt_in      (B, T) int64  decoder input:  <sos> y_1 … y_n, ``pad_id`` padding
    tgt_out     (B, T) int64  decoder target: y_1 … y_n <eos>, :data:`IGNORE_INDEX` padding
    tgt_lengths (B,)   int64  n + 1 (the same for tgt_in and tgt_out)
    tgt_mask    (B, T) bool   True at real positions of tgt_in / tgt_out
    """

    src: Tensor
    src_lengths: Tensor
    src_mask: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    tgt_lengths: Tensor
    tgt_mask: Tensor


def pad_batch(sequences: Sequence[TokenSequence], pad_id: int = PAD_ID) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad ``sequences`` (lists of ints or 1-D tensors) into ``tokens (B, T)``, ``lengths (B,)``, ``mask (B, T)``.

    T is the longest length in the batch; ``mask[b, t] = t < lengths[b]``. Every sequence needs at least one token.
    """
    if len(sequences) == 0:
        raise DataError("pad_batch: the batch is empty")
    rows = [torch.as_tensor(s, dtype=torch.int64) for s in sequences]
    for i, row in enumerate(rows):
        if row.dim() != 1 or row.numel() == 0:
            raise DataError(
                f"pad_batch: sequence {i} of the batch must be a non-empty 1-D list of ids, got {tuple(row.shape)}"
            )
    lengths = torch.tensor([row.numel() for row in rows], dtype=torch.int64)  # (B,)
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.int64)  # (B, T)
    for b, row in enumerate(rows):
        tokens[b, : row.numel()] = row
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]  # (B, T)
    return tokens, lengths, mask


def collate_classification(examples: Sequence[tuple[TokenSequence, int]], pad_id: int = PAD_ID) -> Batch:
    """``[(token_ids, label), ...]`` -> :class:`Batch` with ``labels (B,)``. Use with
    ``functools.partial(collate_classification, pad_id=...)`` as a DataLoader's ``collate_fn``."""
    tokens, lengths, mask = pad_batch([tokens for tokens, _ in examples], pad_id)
    labels = torch.tensor([int(label) for _, label in examples], dtype=torch.int64)  # (B,)
    return Batch(tokens, lengths, mask, labels)


def collate_tagging(examples: Sequence[tuple[TokenSequence, TokenSequence]], pad_id: int = PAD_ID) -> Batch:
    """``[(token_ids, tag_ids), ...]`` (one tag per token) -> :class:`Batch` with ``labels (B, T)``, padded with
    :data:`IGNORE_INDEX`."""
    for i, (tokens, tags) in enumerate(examples):
        if len(tokens) != len(tags):
            raise DataError(f"collate_tagging: example {i} has {len(tokens)} tokens but {len(tags)} tags")
    tokens, lengths, mask = pad_batch([tokens for tokens, _ in examples], pad_id)
    labels, _, _ = pad_batch([tags for _, tags in examples], IGNORE_INDEX)  # (B, T)
    return Batch(tokens, lengths, mask, labels)


def collate_seq2seq(
    examples: Sequence[tuple[TokenSequence, TokenSequence]],
    pad_id: int = PAD_ID,
    sos_id: int = SOS_ID,
    eos_id: int = EOS_ID,
) -> Seq2SeqBatch:
    """``[(src_ids, tgt_ids), ...]`` without specials -> :class:`Seq2SeqBatch` for teacher forcing:
    ``tgt_in = <sos> + tgt`` and ``tgt_out = tgt + <eos>``, so step t reads ``tgt_in[:, t]`` and predicts
    ``tgt_out[:, t]``. An empty target is allowed (the model must learn to emit <eos> at once)."""
    src, src_lengths, src_mask = pad_batch([src for src, _ in examples], pad_id)
    targets = [torch.as_tensor(tgt, dtype=torch.int64).reshape(-1) for _, tgt in examples]
    tgt_in, tgt_lengths, tgt_mask = pad_batch([torch.cat([torch.tensor([sos_id]), t]) for t in targets], pad_id)
    tgt_out, _, _ = pad_batch([torch.cat([t, torch.tensor([eos_id])]) for t in targets], IGNORE_INDEX)
    return Seq2SeqBatch(src, src_lengths, src_mask, tgt_in, tgt_out, tgt_lengths, tgt_mask)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, so little of each batch is padding.

    Each epoch: shuffle the indices (if ``shuffle``), cut them into chunks of ``batch_size ·
    bucket_size_multiplier``, sort each chunk by length, cut it into batches of ``batch_size``, and shuffle the
    order of all the batches (if ``shuffle``). Every index appears exactly once per epoch (``drop_last`` drops
    the one short batch, if any). The order is a function of ``seed + epoch`` (as in torch's
    DistributedSampler): call :meth:`set_epoch` before each epoch for a new, reproducible order.
    """

    def __init__(
        self,
        lengths: Sequence[int] | Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
    ):
        self.lengths = torch.as_tensor(lengths, dtype=torch.int64)
        if self.lengths.dim() != 1 or self.lengths.numel() == 0:
            raise ConfigError(
                f"lengths must be a non-empty 1-D sequence of ints, got shape {tuple(self.lengths.shape)}"
            )
        positive_int("batch_size", batch_size)
        positive_int("bucket_size_multiplier", bucket_size_multiplier)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_size_multiplier, self.drop_last = bucket_size_multiplier, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = self.lengths.numel()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = self.lengths.numel()
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        chunk = self.batch_size * self.bucket_size_multiplier
        batches: list[Tensor] = []
        for start in range(0, n, chunk):
            indices = order[start : start + chunk]
            indices = indices[torch.argsort(self.lengths[indices], stable=True)]
            batches += list(indices.split(self.batch_size))
        if self.drop_last and batches[-1].numel() < self.batch_size:
            batches.pop()  # chunks are whole multiples of batch_size: only the very last batch can be short
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        for batch in batches:
            yield batch.tolist()


class StreamBatches:
    """The corpus as ``batch_size`` parallel streams, read in consecutive windows for truncated BPTT.

    ``token_ids (N,)`` is cut into B streams of ``L = N // B`` tokens (the last ``N mod B`` are dropped):
    stream b is ``token_ids[b·L : (b+1)·L]``, held as ``streams (B, L)``. Chunk i is
        inputs  = streams[:, i·bptt : i·bptt + k]          (B, k)
        targets = streams[:, i·bptt + 1 : i·bptt + 1 + k]  (B, k),   k = min(bptt, L − 1 − i·bptt)
    so row b of chunk i+1 continues row b of chunk i exactly and the hidden state can be carried (detached)
    across chunks. Iterable any number of times, in the same order; ``len()`` is the number of chunks.
    """

    def __init__(self, token_ids: Tensor, batch_size: int, bptt: int):
        token_ids = torch.as_tensor(token_ids)
        if token_ids.dim() != 1:
            raise DataError(f"stream_batches needs a 1-D tensor of token ids, got shape {tuple(token_ids.shape)}")
        positive_int("batch_size", batch_size)
        positive_int("bptt", bptt)
        length = token_ids.numel() // batch_size
        if length < 2:
            raise DataError(
                f"a corpus of {token_ids.numel()} tokens is too short for batch_size={batch_size} "
                f"(needs at least {2 * batch_size} tokens)"
            )
        self.streams = token_ids[: batch_size * length].view(batch_size, length)  # (B, L)
        self.bptt = bptt

    def __len__(self) -> int:
        return -(-(self.streams.shape[1] - 1) // self.bptt)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        length = self.streams.shape[1]
        for start in range(0, length - 1, self.bptt):
            k = min(self.bptt, length - 1 - start)
            yield self.streams[:, start : start + k], self.streams[:, start + 1 : start + 1 + k]  # (B, k), (B, k)


def stream_batches(token_ids: Tensor, batch_size: int, bptt: int) -> StreamBatches:
    """``(inputs (B, k), targets (B, k))`` windows over ``batch_size`` contiguous streams (:class:`StreamBatches`)."""
    return StreamBatches(token_ids, batch_size, bptt)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """One epoch of an in-memory dataset of ``n`` examples: the indices ``0 … n−1`` in the order of one
    ``torch.randperm`` drawn from ``generator``, cut into batches of ``batch_size`` (the last one shorter)."""
    order = torch.randperm(n, generator=generator)  # (n,)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]  # (B,)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``, for ``DataLoader(generator=...)``: it fixes the shuffling order and the
    base seed of every worker, hence (with :func:`seed_worker`) all randomness in workers."""
    return torch.Generator().manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: seed numpy and ``random`` in each worker from torch's seed.

    torch already seeds each worker with ``base_seed + worker_id`` (base_seed drawn from the loader's generator);
    numpy and ``random`` are not seeded, so without this every worker would repeat the same numpy draws
    (PyTorch's reproducibility notes). With ``num_workers=0`` there are no workers: data loading uses the main
    process's generators, which ``torch.manual_seed(seed)`` (and numpy/random seeding) fixes.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
