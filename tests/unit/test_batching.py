import random

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from dnn.data.batching import (
    IGNORE_INDEX,
    Batch,
    BucketBatchSampler,
    Seq2SeqBatch,
    collate_classification,
    collate_seq2seq,
    collate_tagging,
    make_generator,
    pad_batch,
    seed_worker,
    stream_batches,
)
from dnn.data.images import RandomCrop
from dnn.errors import ConfigError, DataError


def test_pad_batch_pads_right_and_masks_real_tokens():
    tokens, lengths, mask = pad_batch([[5, 6, 7], [8], torch.tensor([9, 4])], pad_id=0)
    assert torch.equal(tokens, torch.tensor([[5, 6, 7], [8, 0, 0], [9, 4, 0]]))
    assert tokens.dtype == torch.int64 and torch.equal(lengths, torch.tensor([3, 1, 2]))
    assert torch.equal(mask, tokens != 0) and mask.dtype == torch.bool
    assert torch.equal(pad_batch([[1, 2], [3]], pad_id=-7)[0], torch.tensor([[1, 2], [3, -7]]))
    with pytest.raises(DataError, match="sequence 1"):
        pad_batch([[1], []])
    with pytest.raises(DataError, match="empty"):
        pad_batch([])


def test_collate_classification_and_tagging():
    batch = collate_classification([([4, 5], 1), ([6], 0)])
    assert isinstance(batch, Batch) and torch.equal(batch.labels, torch.tensor([1, 0]))
    assert torch.equal(batch.tokens, torch.tensor([[4, 5], [6, 0]]))
    tagged = collate_tagging([([4, 5, 6], [1, 2, 3]), ([7], [4])])
    assert torch.equal(tagged.labels, torch.tensor([[1, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]))
    # The loss never sees padding: with ignore_index the padded batch's loss equals the per-token loss on real tags.
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tagged.labels.flatten())
    real = torch.nn.functional.cross_entropy(torch.cat([logits[0], logits[1, :1]]), torch.tensor([1, 2, 3, 4]))
    torch.testing.assert_close(padded, real)
    with pytest.raises(DataError, match="example 1 has 2 tokens but 1 tags"):
        collate_tagging([([1], [1]), ([1, 2], [1])])


def test_collate_seq2seq_shifts_targets_with_sos_and_eos():
    batch = collate_seq2seq([([4, 5, 6], [7, 8]), ([9], [10, 11, 12]), ([4], [])])
    assert isinstance(batch, Seq2SeqBatch)
    assert torch.equal(batch.src, torch.tensor([[4, 5, 6], [9, 0, 0], [4, 0, 0]]))
    assert torch.equal(batch.src_lengths, torch.tensor([3, 1, 1]))
    assert torch.equal(batch.tgt_in, torch.tensor([[2, 7, 8, 0], [2, 10, 11, 12], [2, 0, 0, 0]]))
    ignore = IGNORE_INDEX
    assert torch.equal(batch.tgt_out, torch.tensor([[7, 8, 3, ignore], [10, 11, 12, 3], [3, ignore, ignore, ignore]]))
    assert torch.equal(batch.tgt_lengths, torch.tensor([3, 4, 1]))
    assert torch.equal(batch.tgt_mask, batch.tgt_out != ignore)
    # Teacher forcing: the input at step t+1 is the target of step t.
    assert torch.equal(batch.tgt_in[:, 1:][batch.tgt_mask[:, 1:]], batch.tgt_out[:, :-1][batch.tgt_mask[:, 1:]])


def test_batch_to_moves_every_tensor_and_keeps_values():
    batch = collate_classification([([4, 5], 1), ([6], 0)])
    moved = batch.to("meta")
    assert all(t.device.type == "meta" for t in (moved.tokens, moved.lengths, moved.mask, moved.labels))
    assert batch.tokens.device.type == "cpu"  # a new batch; the original is untouched
    assert torch.equal(batch.to(torch.device("cpu")).tokens, batch.tokens)


def _skewed_lengths(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=3.0, sigma=1.0, size=n).astype(int), 1, 400).tolist()


def _pad_tokens(lengths, batches):
    lengths = torch.tensor(lengths)
    return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)


def test_bucketing_pads_far_less_than_random_batching():
    lengths = _skewed_lengths()
    bucketed = list(BucketBatchSampler(lengths, batch_size=32, seed=0))
    random_batches = list(BatchSampler(RandomSampler(lengths, generator=make_generator(0)), 32, drop_last=False))
    assert _pad_tokens(lengths, bucketed) <= 0.5 * _pad_tokens(lengths, random_batches)


def test_bucket_sampler_covers_every_index_once_and_is_reproducible():
    lengths = _skewed_lengths(1000, seed=1)
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=3, bucket_size_multiplier=5)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler) == 63 and sorted(len(b) for b in epoch0) == [8] + [16] * 62
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))
    assert list(BucketBatchSampler(lengths, batch_size=16, seed=3, bucket_size_multiplier=5)) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and sorted(i for b in epoch1 for i in b) == list(range(1000))
    sampler.set_epoch(1)
    assert list(sampler) == epoch1
    dropped = list(BucketBatchSampler(lengths, batch_size=16, drop_last=True))
    assert len(dropped) == 62 and all(len(b) == 16 for b in dropped)
    ordered = list(BucketBatchSampler([3, 1, 2, 5, 4], batch_size=2, shuffle=False))
    assert ordered == [[1, 2], [0, 4], [3]]  # one chunk, sorted by length, batches in order
    with pytest.raises(ConfigError, match="batch_size"):
        BucketBatchSampler(lengths, batch_size=0)


def test_bucket_sampler_drives_a_dataloader():
    lengths = [1, 5, 2, 4, 3, 3]
    data = [([7] * n, n % 2) for n in lengths]
    loader = DataLoader(data, batch_sampler=BucketBatchSampler(lengths, 2, seed=0), collate_fn=collate_classification)
    batches = list(loader)
    assert sum(len(b.lengths) for b in batches) == 6
    assert sorted(torch.cat([b.lengths for b in batches]).tolist()) == sorted(lengths)


def test_stream_batches_continue_each_stream_and_shift_targets():
    tokens = torch.arange(103)
    chunks = list(stream_batches(tokens, batch_size=4, bptt=7))
    streams = tokens[:100].view(4, 25)  # stream b = tokens[25b : 25b + 25]
    assert len(chunks) == len(stream_batches(tokens, 4, 7)) == 4  # 24 steps in windows of 7, 7, 7, 3
    assert [x.shape for x, _ in chunks] == [(4, 7), (4, 7), (4, 7), (4, 3)]
    inputs = torch.cat([x for x, _ in chunks], dim=1)  # (B, L - 1)
    targets = torch.cat([y for _, y in chunks], dim=1)
    assert torch.equal(inputs, streams[:, :-1]) and torch.equal(targets, streams[:, 1:])
    for (x0, y0), (x1, _) in zip(chunks, chunks[1:]):
        assert torch.equal(y0[:, -1], x1[:, 0])  # across a chunk boundary: the next input is the last target
        assert torch.equal(y0[:, :-1], x0[:, 1:])
    with pytest.raises(DataError, match="too short"):
        stream_batches(torch.arange(7), batch_size=4, bptt=2)
    with pytest.raises(ConfigError, match="bptt"):
        stream_batches(tokens, batch_size=4, bptt=0)


class _AugmentingDataset(Dataset):
    """Draws from torch's, numpy's and Python's global generators, as real augmentation code does."""

    def __init__(self):
        self.images = torch.arange(16 * 64, dtype=torch.float32).view(16, 1, 8, 8)
        self.augment = RandomCrop(8, padding=2)  # no generator: torch's global one, seeded per worker

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.augment(self.images[i]), torch.tensor(np.random.rand() + random.random()), i


def _loader_batches(seed, num_workers, dataset):
    loader = DataLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=make_generator(seed),
    )
    return list(loader)


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))


def test_same_seed_same_order_in_process():
    data = TensorDataset(torch.arange(20).float(), torch.arange(20))
    first, again, other = (_loader_batches(s, 0, data) for s in (5, 5, 6))
    assert _same(first, again) and not _same(first, other)


def test_same_seed_same_augmented_batches_in_process():
    # With num_workers=0 augmentation draws from the main process's generators: seeding them fixes it.
    def run(seed):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        return _loader_batches(seed, 0, _AugmentingDataset())

    with torch.random.fork_rng():
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            assert _same(run(5), run(5)) and not _same(run(5), run(6))
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def test_same_seed_same_augmented_batches_with_workers():
    dataset = _AugmentingDataset()
    first = _loader_batches(11, 2, dataset)
    assert _same(first, _loader_batches(11, 2, dataset)) and not _same(first, _loader_batches(12, 2, dataset))
    noise = torch.cat([batch[1] for batch in first])
    assert len(noise) == 16 and len(set(noise.tolist())) == 16  # the two workers do not repeat each other's draws
    assert sorted(torch.cat([batch[2] for batch in first]).tolist()) == list(range(16))
