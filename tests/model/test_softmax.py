"""The blockwise full-softmax cross-entropy gives the plain one's loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from liverec.model import softmax
from liverec.model.softmax import full_softmax_xent


def case(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """h (11, 4), table (9, 4), targets, blocked padding and item 5."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(11, 4, generator=g, dtype=dtype)
    table = torch.randn(9, 4, generator=g, dtype=dtype)
    y = torch.randint(1, 9, (11,), generator=g)
    y[y == 5] = 6
    blocked = torch.zeros(9, dtype=torch.bool)
    blocked[[0, 5]] = True
    return h, table, y, blocked


def plain(h: torch.Tensor, table: torch.Tensor, y: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """The (P, N+1) logits built whole, then torch's fused cross-entropy."""
    return F.cross_entropy((h @ table.T).masked_fill(blocked, -torch.inf), y)


@pytest.mark.parametrize(
    ("plain_elements", "block_elements"),
    [(0, 1 << 21), (0, 27), (0, 1), (1 << 23, 1 << 21)],  # one block; 3 rows a block; 1 row; built whole
)
def test_loss_and_gradients_equal_the_plain_softmax(
    monkeypatch: pytest.MonkeyPatch, plain_elements: int, block_elements: int
) -> None:
    monkeypatch.setattr(softmax, "PLAIN_ELEMENTS", plain_elements)
    monkeypatch.setattr(softmax, "BLOCK_ELEMENTS", block_elements)
    h, table, y, blocked = case()
    grads = []
    for fn in (full_softmax_xent, plain):
        hh, tt = h.clone().requires_grad_(), table.clone().requires_grad_()
        loss = fn(hh, tt, y, blocked)
        (3.0 * loss).backward()  # an upstream gradient other than 1
        assert hh.grad is not None and tt.grad is not None
        grads.append((loss.detach(), hh.grad, tt.grad))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want)
    assert grads[0][2][5].abs().sum() == 0  # a blocked item gets no gradient


def test_gradcheck_in_double(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(softmax, "PLAIN_ELEMENTS", 0)
    monkeypatch.setattr(softmax, "BLOCK_ELEMENTS", 36)  # 4 rows per block
    h, table, y, blocked = case(torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b: full_softmax_xent(a, b, y, blocked),
        (h.requires_grad_(), table.requires_grad_()),
    )
