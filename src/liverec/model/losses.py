"""Next-item losses: what `SASRec.loss` minimises, chosen once from the config (`loss_for`).

Each loss is a small object called with the hidden states of the positions that have a target, those
targets and an item table, and returns their mean cross-entropy. `SASRec.loss` owns what is common
to both (the states, the table, the `text_loss` second term, which calls the same loss again with
another table); a loss owns only which items compete with the target and how.

Shapes and dtypes, for every loss:
    h      (P, D) float32  hidden states, one per position with a target
    y      (P,)   int64    target rows of ``table`` (model indices: catalog row + 1, never 0)
    table  (N+1, D) float32 item representations, row 0 the padding row (never a candidate)
    exclude (N+1,) bool    items never scored (held out of training), or None
    log_q  (N+1,) float32  log probability of drawing each item as a negative (sampled loss only)
    -> () float32
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from liverec.model.softmax import full_softmax_xent
from liverec.settings import ModelSettings


class NextItemLoss(ABC):
    @abstractmethod
    def __call__(
        self, h: Tensor, y: Tensor, table: Tensor, exclude: Tensor | None = None, log_q: Tensor | None = None
    ) -> Tensor:
        """Mean cross-entropy of targets ``y`` given states ``h`` against ``table`` (see the module)."""


class FullSoftmax(NextItemLoss):
    """Every catalog item competes with the target ("SASRec+"; one sampled negative trains far
    worse). Computed a block of rows at a time when the logits are large (`model.softmax`)."""

    def __call__(
        self, h: Tensor, y: Tensor, table: Tensor, exclude: Tensor | None = None, log_q: Tensor | None = None
    ) -> Tensor:
        blocked = torch.zeros(len(table), dtype=torch.bool, device=h.device)  # (N+1,)
        blocked[0] = True  # the padding row is never a candidate
        if exclude is not None:
            blocked |= exclude
        return full_softmax_xent(h, table, y, blocked)


@dataclass(frozen=True)
class SampledSoftmax(NextItemLoss):
    """The target against ``n_negatives`` items drawn from Q and shared by the whole batch, with logQ
    correction (Yi et al., 2019), so the estimate is unbiased for the full softmax: the loss's cost
    no longer grows with the catalog. A negative that is the row's own target is masked out."""

    n_negatives: int = 1024

    def __call__(
        self, h: Tensor, y: Tensor, table: Tensor, exclude: Tensor | None = None, log_q: Tensor | None = None
    ) -> Tensor:
        if log_q is None:
            raise ValueError("the sampled loss needs log_q, the log sampling probability of each item")
        q = log_q.exp()  # (N+1,)
        if exclude is not None:
            q = q.masked_fill(exclude, 0.0)
        q[0] = 0.0
        neg = torch.multinomial(q, self.n_negatives, replacement=True)  # (K,)
        pos_logit = (h * table[y]).sum(-1, keepdim=True) - log_q[y].unsqueeze(1)  # (P, 1)
        neg_logit = h @ table[neg].T - log_q[neg].unsqueeze(0)  # (P, K)
        neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == y.unsqueeze(1), -torch.inf)  # accidental hits
        logits = torch.cat([pos_logit, neg_logit], dim=1)  # (P, 1 + K): the target is column 0
        return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=h.device))


def loss_for(config: ModelSettings) -> NextItemLoss:
    """The loss ``config.loss`` names."""
    if config.loss == "sampled":
        return SampledSoftmax(config.n_negatives)
    return FullSoftmax()
