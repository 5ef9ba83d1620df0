import numpy as np
import torch

from de3pipe.modeling.batching import length_grouped_batches


def _padded_tokens(batches, lengths):
    return sum(len(rows) * lengths[rows].max() for rows in batches)


def test_length_grouped_batches_cover_every_row_once_and_pad_less():
    lengths = np.random.default_rng(0).integers(3, 120, size=1000)
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group_batches=8)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    assert sum(len(b) < 32 for b in batches) <= 4  # at most one short batch per group
    shuffled = np.array_split(torch.randperm(1000, generator=torch.Generator().manual_seed(1)).numpy(), 32)
    assert _padded_tokens(batches, lengths) < 0.75 * _padded_tokens(shuffled, lengths)


def test_length_grouped_batches_are_seeded_and_vary_between_epochs():
    lengths = np.arange(200) % 17
    first = length_grouped_batches(lengths, 16, torch.Generator().manual_seed(3))
    again = length_grouped_batches(lengths, 16, torch.Generator().manual_seed(3))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    generator = torch.Generator().manual_seed(3)
    epoch1, epoch2 = (length_grouped_batches(lengths, 16, generator) for _ in range(2))
    assert [b.tolist() for b in epoch1] != [b.tolist() for b in epoch2]
    # batch order is shuffled, not longest-first
    assert [lengths[b].max() for b in epoch1] != sorted((lengths[b].max() for b in epoch1), reverse=True)
