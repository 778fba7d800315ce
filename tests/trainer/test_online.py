"""`OnlineLearner` on the trained tiny SASRec: what becomes an example, replay, vocabulary growth
with text, EMA, explicit negatives, stale items, rebuilding without training, checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from liverec.core.schema import Event, EventType, Item, StoredEvent
from liverec.model.text import TextEncoder
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.trainer.online import OnlineConfig, OnlineLearner, Track, pad_moments
from liverec.trainer.replay import ReplayBuffer
from support.world import NEW_TEXT, T0, same_weights

from .conftest import (
    ONLINE,
    PAGE,
    STREAM_T0,
    Rig,
    Trained,
    click,
    history,
    stream,
    weights,
)


def stored(events: Sequence[Event], first: int = 1) -> list[StoredEvent]:
    return [StoredEvent(first + k, e) for k, e in enumerate(events)]


def learner(trained: Trained, **cfg: Any) -> OnlineLearner:
    return OnlineLearner(trained.fresh(), trained.vocab, ONLINE.model_copy(update=cfg))


def idx(lrn: OnlineLearner, item: str) -> int:
    row = lrn.vocab.row(item)
    assert row is not None
    return row + 1


def test_each_positive_event_becomes_one_example_of_the_sequence_before_it(trained: Trained) -> None:
    """Input = the user's positives before the event (left-padded window), target = its item;
    impressions and skips add nothing to the sequence; a user's first positive has no example.
    Training and rebuilding (``train=False``) produce the same examples, in log order."""
    evs = [
        click("u", "space-0", 10.0),
        click("v", "cooking-0", 11.0),
        click("u", "space-1", 12.0),
        click("u", "football-0", 13.0, EventType.impression),
        click("u", "space-5", 14.0, EventType.skip),
        click("v", "cooking-1", 15.0, EventType.purchase),
        click("u", "space-2", 16.0),
        click("u", "space-3", 17.0, EventType.like),
    ]
    for train in (True, False):
        lrn = learner(trained, window=4)
        stats = lrn.fold(stored(evs), train=train)
        assert (stats.events, stats.positives, stats.negatives) == (7, 6, 1)
        i = {item: idx(lrn, item) for item in ("space-0", "space-1", "space-2", "space-3")}
        j = {item: idx(lrn, item) for item in ("cooking-0", "cooking-1")}
        expected = [  # (items before, target), in log order
            ([0, 0, 0, i["space-0"]], i["space-1"]),
            ([0, 0, 0, j["cooking-0"]], j["cooking-1"]),
            ([0, 0, i["space-0"], i["space-1"]], i["space-2"]),
            ([0, i["space-0"], i["space-1"], i["space-2"]], i["space-3"]),
        ]
        n = len(lrn.replay)
        assert n == len(expected)
        assert lrn.replay.inputs[:n, 0].tolist() == [e[0] for e in expected]
        assert lrn.replay.targets[:n].tolist() == [e[1] for e in expected]
        assert lrn.examples == (len(expected) if train else 0)
        assert lrn.offset == len(evs)
        assert list(lrn.users["u"].items) == [i[k] for k in ("space-0", "space-1", "space-2", "space-3")]


def test_a_repeated_engagement_is_no_example(trained: Trained) -> None:
    """click then purchase of the same item: one position, and no example whose target is the
    item just engaged with (serving excludes it, so learning it would waste capacity)."""
    evs = [
        click("u", "space-0", 10.0),
        click("u", "space-1", 11.0),
        click("u", "space-1", 12.0, EventType.add_to_cart),
        click("u", "space-1", 13.0, EventType.purchase),
        click("u", "space-2", 14.0),
    ]
    lrn = learner(trained, window=4)
    stats = lrn.fold(stored(evs), train=False)
    assert stats.positives == 5
    i = {item: idx(lrn, item) for item in ("space-0", "space-1", "space-2")}
    assert list(lrn.users["u"].items) == [i["space-0"], i["space-1"], i["space-2"]]
    assert lrn.replay.targets[: len(lrn.replay)].tolist() == [i["space-1"], i["space-2"]]


def test_replay_is_bounded_and_recency_weighted() -> None:
    """The buffer keeps only the newest `capacity` examples and samples them with a weight that
    halves every `half_life` examples of age."""
    buf = ReplayBuffer(capacity=200, shape=(1,), half_life=50.0, seed=1)
    for start in range(0, 1_000, 100):  # targets = arrival numbers
        serial = np.arange(start, start + 100, dtype=np.int32)
        buf.add(serial[:, None], serial)
    assert len(buf) == 200
    assert sorted(buf.targets.tolist()) == list(range(800, 1_000))
    _, got, weights = buf.sample(40_000)
    assert got.min() >= 800 and np.all(weights == 1.0)  # added without weights: 1
    age = 999 - got
    # P(age < 50) = (1 - 2^-1) / (1 - 2^-4) = 0.533; P(age >= 150) = (2^-3 - 2^-4) / (1 - 2^-4) = 0.067
    assert abs(float(np.mean(age < 50)) - 0.5 / 0.9375) < 0.02
    assert abs(float(np.mean(age >= 150)) - 0.0625 / 0.9375) < 0.015


def test_the_learners_replay_stays_within_capacity(trained: Trained) -> None:
    """However long the stream, the learner's replay holds `replay_capacity` examples at most."""
    lrn = learner(trained, replay_capacity=500)
    lrn.fold(stored(history()), train=False)
    lrn.fold(stored(stream(4), first=10_000))
    assert len(lrn.replay) == 500 and lrn.replay.added > 500


def test_a_new_item_gets_a_text_initialised_row_in_both_nets_and_in_adams_state(
    trained: Trained, encoder: TextEncoder
) -> None:
    """On first sight a new item gets an embedding row (id part untrained, text from ``text_fn``) in the
    raw and the EMA net; Adam's moments grow with zero rows and keep the old ones; training then
    moves the new row like any other."""

    def text_fn(ids: list[str]) -> dict[str, np.ndarray]:
        return {i: encoder.encode([NEW_TEXT[i]])[0] for i in ids if i in NEW_TEXT}

    lrn = OnlineLearner(trained.fresh(), trained.vocab, ONLINE.model_copy(), text_fn=text_fn)
    lrn.fold(stored(history()), train=False)
    lrn.fold(stored(stream(1), first=5_000))  # some steps: Adam has state for every row
    emb = lrn.net.id_emb.weight
    old_state = {k: v.clone() for k, v in lrn.opt.state[emb].items() if k != "step"}
    n_old = lrn.net.config.n_items

    newcomers = [click(f"u{u}", "new-space", STREAM_T0 + 500 + u) for u in range(0, 60, 3)]
    lrn.fold(stored(newcomers, first=6_000), train=False)
    row = idx(lrn, "new-space")
    assert row == n_old + 1 and len(lrn.vocab) == n_old + 1
    for net in (lrn.net, lrn.ema):
        assert net.config.n_items == n_old + 1 and net.id_emb.weight.shape[0] == n_old + 2
        assert torch.allclose(net.text_emb[row], torch.from_numpy(text_fn(["new-space"])["new-space"]))
        assert net.unk_id is not None and torch.equal(net.id_emb.weight[row], net.unk_id)  # untrained
    emb = lrn.net.id_emb.weight
    state = lrn.opt.state[emb]
    for key, before in old_state.items():
        assert state[key].shape == (n_old + 2, before.shape[1])
        assert torch.equal(state[key][: n_old + 1], before)
        assert torch.count_nonzero(state[key][row]) == 0

    more = [click(f"u{u}", "new-space", STREAM_T0 + 900 + u) for u in range(1, 60, 3)]
    lrn.fold(stored(more, first=7_000))  # trains with the grown table: the new row is a target
    assert not torch.equal(lrn.net.id_emb.weight[row], lrn.net.unk_id)
    assert torch.count_nonzero(lrn.opt.state[lrn.net.id_emb.weight]["exp_avg"][row]) > 0


def test_the_ema_lags_the_raw_weights(trained: Trained) -> None:
    """After each step EMA = decay * EMA + (1 - decay) * raw: it moves, but less than the raw net."""
    lrn = learner(trained, batch_size=4_000)  # one step for the whole fold
    lrn.fold(stored(history()), train=False)
    start, ema0 = weights(lrn.net), weights(lrn.ema)
    lrn.fold(stored(stream(1), first=5_000))
    assert lrn.steps == 1
    raw, ema, d = weights(lrn.net), weights(lrn.ema), lrn.cfg.ema_decay
    for k in ema:
        assert torch.allclose(ema[k], d * ema0[k] + (1 - d) * raw[k], atol=1e-6), k
    lrn.fold(stored(stream(3)[300:], first=6_000))

    def dist(a: dict[str, torch.Tensor]) -> float:
        return sum(float((a[k] - start[k]).norm()) for k in start if k != "text_emb")

    assert 0 < dist(weights(lrn.ema)) < dist(weights(lrn.net)) / 3


@pytest.mark.parametrize("kind", [EventType.dislike, EventType.skip])
def test_an_explicit_negative_lowers_the_items_score(trained: Trained, kind: EventType) -> None:
    """The same stream with and without one user's dislike (skip) of the item the model ranks
    first for them: with it, that item scores lower for them afterwards (unlikelihood). With the
    unlikelihood weight at 0 the negative changes nothing."""
    user = "u0"
    seq = [e for e in history() if e.user_id == user]
    positives = stored([e for e in stream(1) if e.user_id != user], first=5_000)

    def after(with_negative: bool, weight: float) -> tuple[float, str]:
        lrn = learner(trained, unlikelihood=weight, batch_size=4_000)
        lrn.fold(stored(history()), train=False)
        window = lrn.window_of(user, lrn.cfg.window)[None]
        scores = lrn.scores(lrn.net, window)[0]
        scores[[0, *lrn.seen_of(user)]] = -np.inf
        top = lrn.vocab.ids[int(np.argmax(scores)) - 1]
        page = list(positives)
        if with_negative:
            page.insert(0, StoredEvent(4_999, click(user, top, seq[-1].timestamp + 1, kind)))
        lrn.fold(page)
        return float(lrn.scores(lrn.net, window)[0, idx(lrn, top)]), top

    with_neg, top = after(True, ONLINE.unlikelihood)
    without, top2 = after(False, ONLINE.unlikelihood)
    assert top == top2
    assert with_neg < without - 0.05
    assert after(True, 0.0)[0] == after(False, 0.0)[0]


def test_items_unseen_for_item_ttl_s_are_not_trained_as_candidates(trained: Trained) -> None:
    """With `item_ttl_s`, items nobody touched for that long leave the softmax: training on fresh
    events does not move their id embeddings at all (without a TTL it does)."""
    genres_seen = [e for e in stream(2) if int(e.user_id[1:]) % 3 != 2]  # space and cooking users only
    stale = [i for i in trained.vocab if i.startswith("football")]

    def football_moved(ttl: float) -> bool:
        lrn = learner(trained, item_ttl_s=ttl, replay_ratio=0.0)
        lrn.fold(stored(history()), train=False)  # football last seen at T0 + a few seconds
        rows = [idx(lrn, i) for i in stale]
        before = lrn.net.id_emb.weight[rows].detach().clone()
        lrn.fold(stored(genres_seen, first=5_000))  # an hour later
        assert lrn.steps > 0
        return not torch.equal(lrn.net.id_emb.weight[rows], before)

    assert STREAM_T0 - T0 > 600.0
    assert not football_moved(600.0)
    assert football_moved(0.0)


def test_fold_without_training_builds_state_but_leaves_weights_alone(trained: Trained) -> None:
    """``fold(train=False)`` (the rebuild on start) builds sequences, replay and the offset, and
    leaves the weights, the EMA and the optimiser untouched."""
    lrn = learner(trained)
    net0, ema0 = weights(lrn.net), weights(lrn.ema)
    events = stored(history())
    stats = lrn.fold(events, train=False)
    assert stats.steps == 0 and lrn.steps == 0 and lrn.examples == 0 and not lrn.opt.state
    assert same_weights(weights(lrn.net), net0) and same_weights(weights(lrn.ema), ema0)
    assert lrn.offset == len(events) and len(lrn.users) == 300
    assert len(lrn.replay) == sum(len(t.items) - 1 for t in lrn.users.values())


def test_a_checkpoint_resumes_with_the_same_weights_offset_and_state(rig: Rig) -> None:
    """`Follower.save_checkpoint` then a new `Follower.start` (as after a restart): same raw and
    EMA weights, optimiser state, counters, offset, vocabulary (with an item learned online) and
    user sequences; the resumed learner goes on learning."""
    rig.store.upsert_items([Item(item_id="new-space", title=NEW_TEXT["new-space"])])
    events = stream(3)
    events += [click(f"u{u}", "new-space", STREAM_T0 + 500 + u) for u in range(0, 60, 3)]
    rig.append(events)
    first = rig.follower()
    first.run(follow=False, page=PAGE)
    a = first.learner
    assert a is not None and a.offset == rig.store.last_offset() and "new-space" in a.vocab
    first.save_checkpoint()

    second = rig.follower()
    b = second.start()
    assert b.offset == a.offset and (b.steps, b.examples) == (a.steps, a.examples) > (0, 0)
    assert b.vocab.to_list() == a.vocab.to_list()
    assert same_weights(weights(b.net), weights(a.net)) and same_weights(weights(b.ema), weights(a.ema))
    sa, sb = a.opt.state_dict(), b.opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k, st in sa["state"].items():
        assert all(torch.equal(st[key], sb["state"][k][key]) for key in st)
    assert {u: list(t.items) for u, t in a.users.items()} == {u: list(t.items) for u, t in b.users.items()}

    rig.append(stream(4)[900:])
    second.run(follow=False, page=PAGE)
    assert b.offset == rig.store.last_offset() and b.examples > a.examples


def test_track_windows_are_the_left_padded_tail_of_the_whole_sequence() -> None:
    """`Track` windows (with and without extra entries not folded in yet) are the newest items and
    their event types, left-padded; a repeat of the newest engagement only deepens its type."""
    rng = np.random.default_rng(0)
    for trial in range(50):
        track, items, types = Track.empty(200), [], []
        t = 1e9
        for _ in range(int(rng.integers(0, 40))):
            t += float(rng.exponential(3_000.0))
            idx, kind = int(rng.integers(1, 6)), int(rng.integers(1, 4))
            if track.add(idx, t, kind):
                items.append(idx), types.append(kind)
            else:  # a repeat of the same engagement: only the type deepens
                assert items and items[-1] == idx
                types[-1] = kind
        extra = [(int(rng.integers(1, 6)), int(rng.integers(1, 4))) for _ in range(trial % 3)]
        all_items = items + [e[0] for e in extra]
        all_types = types + [e[1] for e in extra]
        for length in (1, 5, 20):
            want = np.zeros((2, length), np.int64)
            n = min(length, len(all_items))
            if n:
                want[0, length - n :] = all_items[-n:]
                want[1, length - n :] = all_types[-n:]
            np.testing.assert_array_equal(track.example(length, extra), want)


def test_positives_are_weighted_by_the_inverse_propensity_of_their_impression(trained: Trained) -> None:
    """With `ips_max`, a click on an item the policy showed with propensity p weighs min(ips_max,
    1/p); a click with no logged impression weighs 1; without `ips_max` every weight is 1. The
    step's loss is then the weighted mean of the examples' cross-entropies."""
    shown = {"propensity": 0.1, "request_id": "r", "position": 3}
    evs = [
        click("u", "space-0", 10.0),
        click("u", "space-1", 11.0, EventType.impression, context={**shown, "propensity": 0.5}),
        click("u", "space-2", 11.0, EventType.impression, context=shown),
        click("u", "space-1", 12.0),  # shown with 0.5 -> 2
        click("u", "space-2", 13.0),  # shown with 0.1 -> 10, capped at 4
        click("u", "space-3", 14.0),  # never shown -> 1
    ]
    for cap, expected in ((4.0, [2.0, 4.0, 1.0]), (0.0, [1.0, 1.0, 1.0])):
        lrn = learner(trained, window=4, ips_max=cap)
        lrn.fold(stored(evs), train=False)
        assert lrn.replay.weights[: len(lrn.replay)].tolist() == expected
    lrn = learner(trained, window=4, ips_max=4.0)
    lrn.fold(stored(evs), train=False)
    n = len(lrn.replay)
    inp, tgt, w = lrn.replay.inputs[:n], lrn.replay.targets[:n], lrn.replay.weights[:n]
    scores = torch.from_numpy(lrn.scores(lrn.net, inp))
    scores[:, 0] = -torch.inf
    nll = -torch.log_softmax(scores, dim=1)[torch.arange(n), torch.from_numpy(tgt.astype(np.int64))]
    want = float((torch.from_numpy(w) * nll).sum() / w.sum())
    assert lrn._step(inp, tgt, None, w) == pytest.approx(want, rel=1e-5)
    assert want != pytest.approx(float(nll.mean()), rel=1e-3)  # the weights matter here


def test_sharded_steps_learn_what_one_shard_learns(trained: Trained) -> None:
    """A step's batch cut into shards (their forward and backward in parallel threads) gives the
    same loss and the same gradients as the whole batch at once, explicit negatives and example
    weights included; and two sharded runs end with identical weights (a seed fixes the result)."""
    evs = history()[:400]
    negs = (np.stack([np.arange(4, dtype=np.int32).repeat(3).reshape(4, 3).T] * 2), np.array([5, 6]))
    deltas, losses = [], []
    for shards in (1, 3):
        lrn = learner(trained, shards=shards, window=4, grad_clip=0.0)
        lrn.fold(stored(evs), train=False)
        n = len(lrn.replay)
        inp, tgt = lrn.replay.inputs[:n], lrn.replay.targets[:n]
        w = np.linspace(0.5, 2.0, n).astype(np.float32)
        lrn.opt = torch.optim.SGD(lrn.net.parameters(), lr=1.0)  # weight change = -gradient
        before = [p.detach().clone() for p in lrn.net.parameters()]
        losses.append(lrn._step(inp, tgt, negs, w))
        deltas.append([b - p.detach() for b, p in zip(before, lrn.net.parameters(), strict=True)])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    names = [name for name, _ in trained.fresh().named_parameters()]
    for name, one, three in zip(names, *deltas, strict=True):
        torch.testing.assert_close(three, one, rtol=1e-4, atol=1e-7, msg=name)
    assert any(bool(d.abs().sum() > 0) for d in deltas[0])  # it did learn
    runs = []
    for _ in range(2):
        lrn = learner(trained, shards=3, batch_size=32)
        assert lrn.fold(stored(evs)).steps > 3
        runs.append(lrn.net.state_dict())
    assert same_weights(*runs)


def test_shards_must_be_positive() -> None:
    """Checked where the settings load (`OnlineConfig`), before any learner is built."""
    with pytest.raises(ValueError, match="shards"):
        OnlineConfig(shards=0)


def test_restored_adam_moments_are_padded_for_rows_the_parameter_gained() -> None:
    """Adam state saved for a smaller table (a checkpoint from before the table grew) is padded with
    zero moments: the old rows keep theirs, the new rows start unstepped, and the next step runs."""
    small = torch.nn.Parameter(torch.ones(3, 2))
    opt = torch.optim.AdamW([small], lr=0.1, foreach=True)
    small.sum().backward()
    opt.step()
    saved = opt.state_dict()
    big = torch.nn.Parameter(torch.ones(5, 2))
    opt = torch.optim.AdamW([big], lr=0.1, foreach=True)
    opt.load_state_dict(saved)
    pad_moments(opt)
    for key in ("exp_avg", "exp_avg_sq"):
        moment = opt.state[big][key]
        assert moment.shape == (5, 2)
        assert torch.equal(moment[:3], saved["state"][0][key]) and not moment[3:].any()
    big.sum().backward()
    opt.step()  # without the padding, the foreach update fails on mismatched shapes


def test_rank_is_a_full_ranking_without_padding_or_the_users_earlier_items() -> None:
    """`OnlineLearner.rank` (the prequential evaluation's and the gate's ranking) against a count done
    here: the items other than the target, not yet seen, that score at least as high."""
    n = 12
    net = SASRec(TransformerConfig(n_items=n, text_dim=0, d_model=8, n_layers=1, n_heads=1, max_len=8))
    lrn = OnlineLearner(net, [f"i{k}" for k in range(n)])
    rng = np.random.default_rng(0)
    windows = np.zeros((6, 3, 8), np.int32)
    windows[:, 0, -3:] = rng.integers(1, n + 1, (6, 3))
    targets = rng.integers(1, n + 1, 6)
    seen = [np.unique(np.append(rng.integers(1, n + 1, 4), t)) for t in targets]  # the target too
    got = lrn.rank(lrn.ema, windows, targets, seen)
    scores = lrn.scores(lrn.ema, windows)
    for b, t in enumerate(targets):
        others = [i for i in range(1, n + 1) if i != t and i not in seen[b]]
        assert got[b] == sum(scores[b, i] >= scores[b, t] for i in others)
    assert got.max() > 0
