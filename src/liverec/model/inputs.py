"""From item-row sequences to the Transformer's input tensors: left-padded model indices (catalog
row + 1, 0 = padding) and, when the config asks for them, time-gap buckets and event types. Shared by
training and serving, so both feed the network the same way."""

from __future__ import annotations

import numpy as np
import torch

from liverec.core.features import left_pad_features
from liverec.model.transformer import TransformerConfig


def left_pad(rows: list[np.ndarray], length: int | None = None) -> torch.Tensor:
    """(B, T) int64 of model indices (catalog row + 1), left-padded with 0."""
    t = length or max((len(r) for r in rows), default=1) or 1
    out = np.zeros((len(rows), t), dtype=np.int64)
    for b, r in enumerate(rows):
        r = np.asarray(r)[-t:]
        if len(r):
            out[b, t - len(r) :] = r + 1
    return torch.from_numpy(out)


Inputs = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]  # items, gaps, types: (B, T) int64


def model_inputs(seqs: list[np.ndarray], config: TransformerConfig, length: int | None = None) -> Inputs:
    """Left-padded items and, if the config uses them, time-gap buckets and event types."""
    items = left_pad(seqs, length)
    gaps, types = left_pad_features(seqs, items.shape[1], config.time_gaps, config.event_types)
    return (
        items,
        None if gaps is None else torch.from_numpy(gaps),
        None if types is None else torch.from_numpy(types),
    )
