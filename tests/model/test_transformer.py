"""The SASRec network: shapes, causality, padding, growth, hidden ids, and that both losses learn."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from liverec.core.catalog import Catalog
from liverec.core.schema import EventType
from liverec.core.state import UserState
from liverec.model.popularity import PopularityCooc
from liverec.model.sequential import SequentialModel
from liverec.model.text import TextEncoder
from liverec.model.transformer import Dropout, SASRec, TransformerConfig
from liverec.trainer.offline import TrainConfig, train
from support.world import GENRES, NEW_TEXT, PER_GENRE, Trained, rows_of


def tiny(**kw: object) -> SASRec:
    torch.manual_seed(0)
    fields: dict[str, object] = {"n_items": 12, "text_dim": 8, "d_model": 16, "n_layers": 2, "n_heads": 2}
    fields["max_len"] = 16
    net = SASRec(TransformerConfig.model_validate(fields | kw))
    if net.config.text_dim:
        net.set_text(torch.arange(1, net.config.n_items + 1), torch.randn(net.config.n_items, 8))
    return net.eval()


def test_output_shapes_and_dtypes() -> None:
    """forward (B, T, D), score_last (B, N), item_table (N+1, D), scalar losses: all float32."""
    net = tiny(event_types=True)
    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    types = torch.tensor([[0, 0, 1, 2, 3], [1, 1, 1, 1, 1]])
    h = net(seq, types)
    assert h.shape == (2, 5, 16) and h.dtype == torch.float32
    scores = net.score_last(seq, types)
    assert scores.shape == (2, 12) and scores.dtype == torch.float32
    assert net.item_table().shape == (13, 16)
    targets = torch.tensor([[0, 0, 4, 5, 6], [2, 3, 4, 5, 6]])
    net.train()
    full = net.loss(seq, targets, types)
    assert full.shape == () and full.dtype == torch.float32 and torch.isfinite(full)
    net = tiny(event_types=True, loss="sampled", n_negatives=4).train()
    log_q = torch.full((13,), float(np.log(1 / 12)))
    sampled = net.loss(seq, targets, types, log_q=log_q)
    assert sampled.shape == () and sampled.dtype == torch.float32 and torch.isfinite(sampled)
    with pytest.raises(ValueError, match="log_q"):
        net.loss(seq, targets)


def test_changing_a_later_item_never_changes_earlier_hidden_states() -> None:
    """Causality: position t's hidden state depends only on items and types at <= t."""
    net = tiny(event_types=True, dropout=0.2)
    gen = torch.Generator().manual_seed(1)
    seq = torch.randint(1, 13, (3, 10), generator=gen)
    types = torch.randint(1, 3, (3, 10), generator=gen)
    base = net(seq, types)
    for t in range(1, 10):
        for which in range(2):
            inputs = [seq.clone(), types.clone()]
            changed = [seq[:, t] % 12 + 1, 3 - types[:, t]]  # another item, another type
            inputs[which][:, t] = changed[which]
            h = net(*inputs)
            assert torch.allclose(h[:, :t], base[:, :t], atol=1e-6), (t, which)
            assert not torch.allclose(h[:, t], base[:, t], atol=1e-4), (t, which)  # the change is seen


def test_last_only_forward_equals_the_full_forward_at_the_newest_position() -> None:
    """``last=True`` (serving, online steps) skips the other positions in the last block only: the
    newest position's state is the same, with padding and types, eager and in training mode."""
    net = tiny(event_types=True)
    gen = torch.Generator().manual_seed(2)
    seq = torch.randint(1, 13, (4, 9), generator=gen)
    seq[0, :5] = 0  # left padding
    types = torch.randint(1, 3, (4, 9), generator=gen)
    full = net(seq, types)
    last = net(seq, types, last=True)
    assert last.shape == (4, 1, 16)
    assert torch.allclose(last[:, 0], full[:, -1], atol=1e-5)
    unpadded = seq[1:]  # no padding at all: no mask is built (causal kernel / the newest query alone)
    assert torch.allclose(net(unpadded, types[1:]), full[1:], atol=1e-5)
    assert torch.allclose(net(unpadded, types[1:], last=True)[:, 0], full[1:, -1], atol=1e-5)
    net.train()  # gradients flow through the shortened path too
    net.config.dropout = 0.0
    net(seq, types, last=True).sum().backward()
    assert net.blocks[0].attn.qkv.weight.grad is not None and net.id_emb.weight.grad is not None


def test_dropout_is_inverted_dropout_and_off_in_eval() -> None:
    """The uniform-draw `Dropout`: identity in eval mode; in training it zeroes a share ~p of the
    inputs and scales the rest by 1 / (1 - p), so the mean is kept."""
    torch.manual_seed(0)
    x = torch.rand(200_000) + 0.5
    drop = Dropout(0.3).eval()
    assert drop(x) is x
    y = drop.train()(x)
    zero = y == 0
    assert abs(float(zero.float().mean()) - 0.3) < 0.005
    assert torch.allclose(y[~zero], x[~zero] / 0.7)
    assert abs(float(y.mean() / x.mean()) - 1.0) < 0.01
    assert Dropout(0.0).train()(x) is x


def test_attention_dropout_by_hand_equals_the_fused_kernels_when_nothing_is_dropped() -> None:
    """Training with dropout computes attention by hand (SDPA's own dropout is slow on a CPU); with
    every dropout rate set to 0 it must equal the fused path, padded or not, full or last-only."""
    net = tiny(dropout=0.3)
    gen = torch.Generator().manual_seed(3)
    seq = torch.randint(1, 13, (4, 9), generator=gen)
    seq[0, :4] = 0
    want = [net(seq), net(seq, last=True), net(seq[1:]), net(seq[1:], last=True)]
    net.train()
    for m in net.modules():
        if isinstance(m, Dropout):
            m.p = 0.0  # the attention modules still take the by-hand path (their rate is 0.3)
    got = [net(seq), net(seq, last=True), net(seq[1:]), net(seq[1:], last=True)]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    net.blocks[0].attn.attn_drop.p = 0.5  # and dropping does reach the attention weights
    assert not torch.allclose(net(seq[1:]), want[2], atol=1e-3)


def test_left_padding_does_not_change_the_last_hidden_state() -> None:
    """Positions count back from the newest item: padded to T or T + 5, the sequence reads the same."""
    net = tiny(dropout=0.2)
    rows = [torch.tensor([5, 2, 9]), torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([7])]
    for extra in (0, 5):
        t = 6 + extra
        padded = torch.stack([F.pad(r, (t - len(r), 0)) for r in rows])
        h = net(padded)
        if extra == 0:
            short = h
        else:
            assert torch.allclose(h[:, -6:], short, atol=1e-5)  # every real position, not only the last
    alone = [net(r.unsqueeze(0))[0, -1] for r in rows]  # no padding at all
    assert torch.allclose(torch.stack(alone), short[:, -1], atol=1e-5)


def test_grow_keeps_old_items_and_new_rows_score_from_their_text(
    trained: Trained, encoder: TextEncoder
) -> None:
    """Growing appends untrained rows (the unknown-item id embedding): old representations and scores
    are untouched, new items all score alike until their text is set, then their text decides, which
    ranks the new item of the user's genre first."""
    net = trained.fresh()
    n = net.config.n_items
    histories = [
        [f"{g}-{k}", f"{g}-{(k + 1) % PER_GENRE}"] for g in GENRES for k in range(PER_GENRE)
    ]  # two items of one genre
    seqs = torch.cat([rows_of(net, trained.vocab, h) for h in histories])
    with torch.no_grad():
        table, scores = net.item_table().clone(), net.score_last(seqs)
        net.grow(0)
        assert net.config.n_items == n
        net.grow(3)
        assert net.config.n_items == n + 3
        grown = net.item_table()
        assert torch.equal(grown[: n + 1], table)
        assert net.unk_id is not None  # the fixture trains with id dropout
        assert torch.equal(net.id_emb.weight[n + 1 :], net.unk_id.expand(3, -1))
        after = net.score_last(seqs)
        assert after.shape == (len(histories), n + 3)
        assert torch.allclose(after[:, :n], scores, atol=1e-5)
        assert torch.equal(after[:, n:], after[:, n : n + 1].expand(-1, 3))  # nothing tells them apart

        vectors = torch.from_numpy(encoder.encode(list(NEW_TEXT.values())))  # space, cooking, football
        net.set_text(torch.arange(n + 1, n + 4), vectors)
        assert net.text_proj is not None
        assert torch.allclose(net.item_table()[n + 1 :], net.unk_id + net.text_proj(vectors), atol=1e-6)
        assert torch.equal(net.item_table()[: n + 1], table)
        new_scores = net.score_last(seqs)[:, n:]
    favourite = new_scores.argmax(dim=1).tolist()
    assert favourite == [GENRES.index(h[0].rsplit("-", 1)[0]) for h in histories]


def test_item_table_hides_ids() -> None:
    """Hidden rows keep only the text part (zero without text); the others are unchanged."""
    net = tiny()
    hide = torch.zeros(13, dtype=torch.bool)
    hide[[2, 5]] = True
    with torch.no_grad():
        full, hidden = net.item_table(), net.item_table(hide)
        assert net.text_proj is not None
        assert torch.allclose(hidden[[2, 5]], net.text_proj(net.text_emb[[2, 5]]))
        assert not torch.allclose(hidden[[2, 5]], full[[2, 5]])
        assert torch.equal(hidden[~hide], full[~hide])
        no_text = tiny(text_dim=0)
        assert torch.count_nonzero(no_text.item_table(hide)[[2, 5]]) == 0
        assert torch.equal(no_text.item_table(hide)[~hide], no_text.id_emb.weight[~hide])


# -- learning --------------------------------------------------------------------------------------
N_CYCLE = 12


def cycle_batch(length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rotation of 0..11: item i is always followed by i + 1 (model indices are row + 1)."""
    seqs = torch.tensor([[(s + j) % N_CYCLE for j in range(length + 1)] for s in range(N_CYCLE)]) + 1
    return seqs[:, :-1], seqs[:, 1:]


def full_ce(net: SASRec, inp: torch.Tensor, tgt: torch.Tensor) -> float:
    """Exact next-item cross-entropy over the whole catalog, computed here independently."""
    with torch.no_grad():
        table = net.item_table()
        logits = net(inp) @ table[1:].T  # (B, T, N): padding column dropped
        return float(F.cross_entropy(logits.reshape(-1, N_CYCLE), (tgt - 1).reshape(-1)))


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_both_losses_learn_a_deterministic_successor_pattern(loss: str) -> None:
    """Trained on 'i is followed by i + 1', the full softmax and the logQ-corrected sampled softmax
    (5 negatives out of 12) drive the true cross-entropy down and then predict i + 1."""
    net = tiny(text_dim=0, n_layers=1, d_model=16, dropout=0.0, loss=loss, n_negatives=5)
    inp, tgt = cycle_batch()
    log_q = torch.full((N_CYCLE + 1,), float(np.log(1 / N_CYCLE)))
    start = full_ce(net, inp, tgt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(150):
        opt.zero_grad()
        net.loss(inp, tgt, log_q=log_q).backward()
        opt.step()
    net.eval()
    end = full_ce(net, inp, tgt)
    assert end < 0.1 * start, (start, end)
    single = torch.arange(1, N_CYCLE + 1).unsqueeze(1)  # every one-item history
    assert net.score_last(single).argmax(dim=1).tolist() == [(i + 1) % N_CYCLE for i in range(N_CYCLE)]
    assert net.score_last(inp).argmax(dim=1).tolist() == (tgt[:, -1] - 1).tolist()


def test_log_q_correction_keeps_the_full_softmax_order_under_skewed_sampling() -> None:
    """After item 1 comes item 2 seven times in ten, item 3 three times; negatives are drawn mostly
    as item 2 (q = 0.6) and rarely as item 3 (q = 0.02). With the logQ correction the sampled loss
    still ranks 2 above 3, as the full softmax would; uncorrected, the oversampled item would sink."""
    n = 20
    net = tiny(n_items=n, text_dim=0, n_layers=1, dropout=0.0, loss="sampled", n_negatives=16)
    inp = torch.ones(10, 1, dtype=torch.long)
    tgt = torch.tensor([[2]] * 7 + [[3]] * 3)
    q = torch.full((n + 1,), 0.38 / (n - 2))
    q[0], q[2], q[3] = 0.0, 0.6, 0.02
    log_q = (q / q.sum()).log()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(300):
        opt.zero_grad()
        net.loss(inp, tgt, log_q=log_q).backward()
        opt.step()
    net.eval()
    scores = net.score_last(torch.tensor([[1]]))[0]  # column j is item j + 1
    assert float(scores[1]) > float(scores[2]) + 0.5
    assert int(scores.argmax()) == 1


def test_excluded_items_are_never_scored_in_training_and_keep_zero_id_rows() -> None:
    """`exclude`: the loss is the softmax over the other items only, no gradient reaches excluded
    rows, and after `train` their id embeddings are zero: held-out items are text-only, like new ones."""
    net = tiny(text_dim=0, dropout=0.0)
    inp, tgt = cycle_batch()
    keep = ~torch.isin(inp, torch.tensor([4, 9])) & ~torch.isin(tgt, torch.tensor([4, 9]))
    inp, tgt = inp * keep, tgt * keep  # items 3 and 8 (index 4, 9) never appear: held out
    exclude = torch.zeros(N_CYCLE + 1, dtype=torch.bool)
    exclude[[4, 9]] = True
    net.train()
    loss = net.loss(inp, tgt, exclude=exclude)
    with torch.no_grad():
        h, table = net(inp), net.item_table()
        allowed = torch.tensor([i for i in range(1, N_CYCLE + 1) if not exclude[i]])
        logits = h[tgt != 0] @ table[allowed].T
        labels = torch.searchsorted(allowed, tgt[tgt != 0])
        assert torch.equal(allowed[labels], tgt[tgt != 0])
        assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)
    loss.backward()
    assert net.id_emb.weight.grad is not None
    assert torch.count_nonzero(net.id_emb.weight.grad[exclude]) == 0
    assert torch.count_nonzero(net.id_emb.weight.grad[~exclude][1:]) > 0

    seqs = [np.array([(s + j) % N_CYCLE for j in range(8)]) for s in range(N_CYCLE)]
    seqs = [s[(s != 3) & (s != 8)] for s in seqs]  # catalog rows 3 and 8 held out
    before = net.id_emb.weight.detach().clone()
    cfg = TrainConfig(epochs=5, batch_size=4, lr=1e-2, patience=10, threads=1)
    train(net, seqs, seqs, np.array([(s[-1] + 1) % N_CYCLE for s in seqs]), cfg, exclude=np.array([3, 8]))
    rows = net.id_emb.weight.detach()
    assert torch.count_nonzero(rows[exclude]) == 0
    assert not torch.equal(rows[~exclude], before[~exclude])  # the others did train


def test_event_types_are_trained_offline_and_read_when_serving() -> None:
    """With ``event_types``, offline training (`train` on `Seq`s carrying types) learns a pattern that
    depends only on the event type (after a click comes i + 1, after a purchase i + 2), and the served
    model reads the types from the user's live state to predict it."""
    from liverec.core.features import EVENT_TYPE_IDS, Seq
    from liverec.trainer.offline import TrainConfig, train

    n = 8
    click, purchase = EVENT_TYPE_IDS[EventType.click], EVENT_TYPE_IDS[EventType.purchase]
    net = tiny(n_items=n, text_dim=0, n_layers=1, dropout=0.0, event_types=True)
    seqs: list[np.ndarray] = []
    for x in range(n):
        for kind, step in ((click, 1), (purchase, 2)):
            y = (x + step) % n
            seqs.extend([Seq([x, y], [0.0, 1.0], [kind, click])] * 4)  # y follows from the type of x
    val = [Seq([x], [0.0], [kind]) for x in range(n) for kind in (click, purchase)]
    val_targets = np.asarray([(x + step) % n for x in range(n) for step in (1, 2)])
    train(
        net, seqs, val, val_targets, TrainConfig(epochs=150, lr=1e-2, batch_size=64, patience=150, threads=1)
    )
    catalog = Catalog()
    for i in range(n):
        catalog.ensure(f"i{i}")
    served = SequentialModel(net, [f"i{i}" for i in range(n)], "v1", PopularityCooc({}))
    served.sync(catalog)
    for x in range(n):
        for kind, step in ((click, 1), (purchase, 2)):
            user = UserState(deque([x]), deque([0.0]), deque([kind]))
            assert int(np.argmax(served.score(user, n))) == (x + step) % n, (x, kind)


def test_compiled_encoder_matches_eager_and_survives_growth() -> None:
    """`compile_encoder` (used by the online learner) computes what the eager model computes, keeps
    doing so after the catalog grows, and copies of the model are plain eager modules."""
    import copy

    torch.manual_seed(0)
    net = tiny(n_items=12, text_dim=0, n_layers=1, dropout=0.0).eval()
    seq = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 5]])
    with torch.no_grad():
        eager = net.forward(seq)
    net.compile_encoder()
    with torch.no_grad():
        assert torch.allclose(net.forward(seq), eager, atol=1e-5)
        net.grow(3)
        grown = torch.tensor([[0, 13, 14, 15], [1, 2, 3, 5]])
        compiled = net.forward(grown)
    clone = copy.deepcopy(net)
    assert clone._compiled is None and net._compiled is not None
    with torch.no_grad():
        assert torch.allclose(clone.forward(grown), compiled, atol=1e-5)


def test_full_loss_is_the_mean_cross_entropy_over_real_items_without_the_excluded() -> None:
    """Next-item loss = mean over target positions of -log softmax over items 1..N (padding and
    excluded items never candidates)."""
    net = tiny()
    seq = torch.tensor([[0, 3, 4, 5], [1, 2, 3, 4]])
    targets = torch.tensor([[0, 4, 5, 6], [2, 3, 4, 5]])
    exclude = torch.zeros(13, dtype=torch.bool)
    exclude[[7, 8]] = True
    h = net(seq)[targets != 0]  # (P, D)
    logits = h @ net.item_table()[1:].T
    logits[:, [6, 7]] = -torch.inf  # items 7, 8 (model indices) are columns 6, 7
    want = F.cross_entropy(logits, targets[targets != 0] - 1)
    torch.testing.assert_close(net.loss(seq, targets, exclude=exclude), want)


def test_id_dropout_teaches_an_unknown_item_embedding_that_untrained_items_start_from() -> None:
    """With ``id_dropout``, hidden rows take the learned unknown-item embedding (it gets gradient), and
    every untrained row takes its trained value: held-out items after `train`, new rows on `grow`."""
    net = tiny(text_dim=0, dropout=0.0, id_dropout=0.3)
    assert net.unk_id is not None and tiny().unk_id is None  # only models that train it carry it
    hide = torch.zeros(13, dtype=torch.bool)
    hide[[2, 5]] = True
    with torch.no_grad():
        hidden = net.item_table(hide)
        assert torch.equal(hidden[[2, 5]], net.unk_id.expand(2, -1))
        assert torch.equal(hidden[~hide], net.id_emb.weight[~hide])
    inp, tgt = cycle_batch()
    net.train()
    torch.manual_seed(1)
    net.loss(inp, tgt).backward()
    assert net.unk_id.grad is not None and torch.count_nonzero(net.unk_id.grad) > 0

    seqs = [np.array([(s + j) % N_CYCLE for j in range(8)]) for s in range(N_CYCLE)]
    seqs = [s[(s != 3) & (s != 8)] for s in seqs]  # catalog rows 3 and 8 held out
    start = net.unk_id.detach().clone()
    cfg = TrainConfig(epochs=5, batch_size=4, lr=1e-2, patience=10, threads=1)
    train(net, seqs, seqs, np.array([(s[-1] + 1) % N_CYCLE for s in seqs]), cfg, exclude=np.array([3, 8]))
    unk = net.unk_id.detach()
    assert not torch.equal(unk, start)
    assert torch.equal(net.id_emb.weight[[4, 9]], unk.expand(2, -1))  # model indices of rows 3 and 8
    net.grow(2)
    assert torch.equal(net.id_emb.weight[-2:], unk.expand(2, -1))
    trained = torch.ones(N_CYCLE + 3, dtype=torch.bool)
    trained[[0, 4, 9, -2, -1]] = False
    assert net.id_emb.weight[trained].ne(unk).any(dim=1).all()  # trained rows keep their own


def test_text_loss_adds_a_text_only_loss_and_leaves_the_main_loss_whole() -> None:
    """With ``text_loss`` w the loss is the whole table's cross-entropy plus w times the cross-entropy
    against a table whose `id_dropout`-hidden items have their text and the unknown-item id alone
    (``id_dropout`` 1 hides every item there, so both terms are computed here independently)."""
    net = tiny(dropout=0.0, id_dropout=1.0, text_loss=0.5)
    inp, tgt = cycle_batch()
    net.train()
    loss = net.loss(inp, tgt)
    with torch.no_grad():
        text_only = net.item_table(torch.ones(N_CYCLE + 1, dtype=torch.bool))
        logits = net(inp) @ text_only[1:].T  # (B, T, N): the states read the whole table
        aux = float(F.cross_entropy(logits.reshape(-1, N_CYCLE), (tgt - 1).reshape(-1)))
    assert float(loss) == pytest.approx(full_ce(net, inp, tgt) + 0.5 * aux, rel=1e-5)
    loss.backward()
    assert net.unk_id is not None and net.unk_id.grad is not None
    assert torch.count_nonzero(net.unk_id.grad) > 0  # the text-only term trains the unknown-item id
    assert torch.count_nonzero(net.id_emb.weight.grad) > 0  # the main term still trains every id
    sampled = tiny(dropout=0.0, id_dropout=1.0, text_loss=0.5, loss="sampled", n_negatives=8).train()
    sampled.loss(inp, tgt, log_q=torch.full((N_CYCLE + 1,), -math.log(N_CYCLE))).backward()
    assert sampled.unk_id is not None and sampled.unk_id.grad is not None  # the sampled loss has it too
    assert torch.count_nonzero(sampled.unk_id.grad) > 0
    for bad in ({"text_loss": 0.5}, {"text_loss": 0.5, "id_dropout": 0.3, "text_dim": 0}):
        with pytest.raises(ValueError, match="text_loss needs id_dropout"):
            tiny(**bad)


# -- config ----------------------------------------------------------------------------------------
# a config as code before issue 24 saved it (`asdict` of the dataclass): seven options since removed,
# each at the value where it did nothing
OLD_SAVED: dict[str, object] = {
    "n_items": 12, "text_dim": 8, "d_model": 16, "n_layers": 2, "n_heads": 2, "max_len": 16, "dropout": 0.2,
    "id_dropout": 0.0, "text_loss": 0.0, "input_dropout": 0.0, "label_smoothing": 0.0, "exclude_seen": False,
    "event_types": False, "time_gaps": False, "future": 1, "future_decay": 0.5, "block": "prenorm",
    "loss": "full", "n_negatives": 1024,
}  # fmt: skip


def test_a_config_saved_before_options_were_removed_loads_as_the_same_config() -> None:
    config = TransformerConfig.from_dict(OLD_SAVED)
    assert config == tiny().config == TransformerConfig.from_dict(config.to_dict())
    assert set(OLD_SAVED) - set(config.to_dict()) == {
        "input_dropout", "label_smoothing", "exclude_seen", "future", "future_decay", "block", "time_gaps"
    }  # fmt: skip
    assert TransformerConfig.from_dict({**OLD_SAVED, "d_model": 32}).d_model == 32  # the rest is read


@pytest.mark.parametrize(
    ("name", "value"),
    [("future", 3), ("future_decay", 0.7), ("label_smoothing", 0.1), ("input_dropout", 0.2),
     ("exclude_seen", True), ("block", "gated"), ("time_gaps", True)],
)  # fmt: skip
def test_a_config_trained_with_a_removed_option_on_is_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"model option {name} = {value!r} was removed"):
        TransformerConfig.from_dict({**OLD_SAVED, name: value})


def test_config_values_are_checked_where_the_config_is_made() -> None:
    """Unknown names, values out of range and inconsistent combinations fail with their names."""
    cases: list[tuple[dict[str, object], str]] = [
        ({"colour": "red"}, "colour"),
        ({"dropout": 1.0}, "dropout"),
        ({"n_heads": 3}, "n_heads"),  # 16 is not a multiple of 3
        ({"loss": "bpr"}, "loss"),
        ({"n_negatives": 0}, "n_negatives"),
        ({"id_dropout": 1.5}, "id_dropout"),
    ]
    for bad, says in cases:
        with pytest.raises(ValueError, match=says):
            TransformerConfig.from_dict({**tiny().config.to_dict(), **bad})
