"""Tokenisation and batches with dynamic padding (each batch padded to its own longest row)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from de3pipe.errors import De3Error


class EncodedSplit:
    """Token ids of one split, unpadded, with labels and example ids."""

    def __init__(self, features: list[dict[str, list[int]]], labels: np.ndarray, idx: np.ndarray):
        self.features = features
        self.labels = labels
        self.idx = idx

    def __len__(self) -> int:
        return len(self.features)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(f["input_ids"]) for f in self.features])


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, text_a: list[str], text_b: list[str] | None, max_length: int
) -> list[dict[str, list[int]]]:
    encoded = tokenizer(text_a, text_b, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded]
    return [{k: encoded[k][i] for k in keys} for i in range(len(text_a))]


def encode_split(frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int) -> EncodedSplit:
    if len(frame) == 0:
        raise De3Error("cannot encode an empty split")
    text_b = frame["text_b"].tolist() if frame["text_b"].notna().all() else None
    features = encode_texts(tokenizer, frame["text_a"].tolist(), text_b, max_length)
    return EncodedSplit(features, frame["label"].to_numpy(np.int64), frame["idx"].to_numpy(np.int64))


def resolve_device() -> torch.device:
    """A runtime choice, not experiment config: $DE3PIPE_DEVICE (cpu, cuda, cuda:1), else the GPU if any."""
    wanted = os.environ.get("DE3PIPE_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def collate(
    tokenizer: PreTrainedTokenizerBase, features: list[dict[str, list[int]]], device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    # Right padding, whatever the tokenizer's default: the early-exit engine trims trailing padding
    # columns as rows leave.
    batch = dict(tokenizer.pad(features, padding=True, return_tensors="pt", padding_side="right"))
    return {key: value.to(device) for key, value in batch.items()} if device is not None else batch


def length_sorted_batches(split: EncodedSplit, batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length (less padding for inference); order is deterministic."""
    order = np.argsort(split.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator, group_batches: int = 50
) -> list[np.ndarray]:
    """Training batches of similar length, in a seeded random order (less padding per batch).

    A seeded permutation is cut into groups of ``group_batches`` batches; each group is sorted by
    length and cut into batches, and the order of all batches is shuffled, so every epoch still sees
    every row once, in batches whose composition varies from epoch to epoch."""
    order = torch.randperm(len(lengths), generator=generator).numpy()
    batches = []
    group = batch_size * group_batches
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
