"""From item-row sequences to the Transformer's input tensors: left-padded model indices (catalog
row + 1, 0 = padding) and, when the config asks for them, event types. Shared by training and
serving, so both feed the network the same way."""

from __future__ import annotations

import numpy as np
import torch

from liverec.core.features import left_pad_types
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


Inputs = tuple[torch.Tensor, torch.Tensor | None]  # items, event types: (B, T) int64


def model_inputs(seqs: list[np.ndarray], config: TransformerConfig, length: int | None = None) -> Inputs:
    """Left-padded items and, if the config uses them, event types."""
    items = left_pad(seqs, length)
    if not config.event_types:
        return items, None
    return items, torch.from_numpy(left_pad_types(seqs, items.shape[1]))
