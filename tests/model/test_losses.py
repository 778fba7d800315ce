"""The next-item losses against cross-entropies written out here, and how `SASRec.loss` uses them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from liverec.model import softmax
from liverec.model.losses import FullSoftmax, NextItemLoss, SampledSoftmax, loss_for
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.settings import ModelSettings

N = 9  # items 1..9; row 0 of the table is padding


def case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """h (7, 4), targets (7,) in 1..N never 3 or 6, table (N+1, 4), exclude items 3 and 6, and a
    skewed log_q (item 2 drawn far more often than the others)."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 4, generator=g)
    table = torch.randn(N + 1, 4, generator=g)
    y = torch.tensor([1, 2, 4, 5, 7, 8, 9])
    exclude = torch.zeros(N + 1, dtype=torch.bool)
    exclude[[3, 6]] = True
    q = torch.full((N + 1,), 1.0)
    q[2] = 20.0
    return h, y, table, exclude, (q / q.sum()).log()


@pytest.mark.parametrize("plain_elements", [1 << 23, 0])  # logits built whole; a block of rows at a time
def test_full_softmax_is_the_cross_entropy_over_the_items_not_excluded(
    monkeypatch: pytest.MonkeyPatch, plain_elements: int
) -> None:
    monkeypatch.setattr(softmax, "PLAIN_ELEMENTS", plain_elements)
    monkeypatch.setattr(softmax, "BLOCK_ELEMENTS", 2 * (N + 1))  # two rows a block
    h, y, table, exclude, _ = case()
    allowed = torch.tensor([i for i in range(1, N + 1) if not exclude[i]])  # never padding
    want = F.cross_entropy(h @ table[allowed].T, torch.searchsorted(allowed, y))
    torch.testing.assert_close(FullSoftmax()(h, y, table, exclude), want)
    everything = F.cross_entropy(h @ table[1:].T, y - 1)
    torch.testing.assert_close(FullSoftmax()(h, y, table), everything)


def test_sampled_softmax_is_the_logq_corrected_cross_entropy_against_its_negatives() -> None:
    """Per row: -log of exp(s_y - log q_y) over itself plus exp(s_k - log q_k) for each of the K
    shared negatives that is not the row's target, written out here with the same draw."""
    h, y, table, exclude, log_q = case()
    table.requires_grad_()
    torch.manual_seed(3)
    got = SampledSoftmax(n_negatives=5)(h, y, table, exclude, log_q)
    torch.manual_seed(3)
    q = log_q.exp().masked_fill(exclude, 0.0)
    q[0] = 0.0
    neg = torch.multinomial(q, 5, replacement=True).tolist()  # the draw the loss makes
    assert 2 in neg and not set(neg) & {0, 3, 6}
    rows = []
    with torch.no_grad():
        for p in range(len(y)):
            t = int(y[p])
            terms = [float(h[p] @ table[t]) - float(log_q[t])]
            terms += [float(h[p] @ table[k]) - float(log_q[k]) for k in neg if k != t]
            rows.append(torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0) - terms[0])
    assert float(got.detach()) == pytest.approx(float(torch.stack(rows).mean()), rel=1e-5)
    got.backward()
    assert table.grad is not None
    assert torch.count_nonzero(table.grad[[0, 3, 6]]) == 0  # padding and excluded items: never scored
    assert torch.count_nonzero(table.grad[2]) > 0


def test_sampled_softmax_masks_negatives_that_are_the_target() -> None:
    """When every negative drawn is the row's own target there is nothing to compete with: loss 0."""
    h, _, table, _, _ = case()
    y = torch.full((len(h),), 4)
    log_q = torch.full((N + 1,), -math.inf)
    log_q[4] = 0.0  # item 4 is the only item ever drawn
    assert float(SampledSoftmax(n_negatives=8)(h, y, table, log_q=log_q)) == 0.0
    with pytest.raises(ValueError, match="log_q"):
        SampledSoftmax()(h, y, table)


def test_the_config_names_the_loss() -> None:
    assert isinstance(loss_for(ModelSettings()), FullSoftmax)
    assert loss_for(ModelSettings(loss="sampled", n_negatives=7)) == SampledSoftmax(7)
    net = SASRec(
        TransformerConfig(n_items=5, text_dim=0, d_model=8, n_layers=1, loss="sampled", n_negatives=3)
    )
    assert net.criterion == SampledSoftmax(3)
    with pytest.raises(ValueError, match="loss"):
        ModelSettings.model_validate({"loss": "bpr"})


@pytest.mark.parametrize("criterion", [FullSoftmax(), SampledSoftmax(6)])
def test_sasrec_loss_is_the_main_term_plus_text_loss_times_the_text_only_term(
    criterion: NextItemLoss,
) -> None:
    """`SASRec.loss` with ``text_loss`` w, for either loss: the loss of the states against the whole
    table, plus w times the loss against the table where the `id_dropout` draw hid the ids, drawn in
    that order (the hiding first, then each term's negatives) from the same seed."""
    torch.manual_seed(0)
    loss = "sampled" if isinstance(criterion, SampledSoftmax) else "full"
    config = TransformerConfig(
        n_items=N,
        text_dim=4,
        d_model=8,
        n_layers=1,
        dropout=0.0,
        id_dropout=0.5,
        text_loss=0.3,
        loss=loss,
        n_negatives=6,
    )
    net = SASRec(config)
    net.set_text(torch.arange(1, N + 1), torch.randn(N, 4))
    net.train()
    seq = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    targets = torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])
    log_q = torch.full((N + 1,), -math.log(N))
    torch.manual_seed(11)
    got = net.loss(seq, targets, log_q=log_q)
    torch.manual_seed(11)
    hide = torch.rand(N + 1) < 0.5
    assert 0 < int(hide[1:].sum()) < N  # some ids hidden, not all: the two tables differ
    with torch.no_grad():
        table = net.item_table()
        h = net(seq, table=table)[targets != 0]
        y = targets[targets != 0]
        want = criterion(h, y, table, log_q=log_q) + 0.3 * criterion(h, y, net.item_table(hide), log_q=log_q)
    torch.testing.assert_close(got.detach(), want)
