"""The model registry: faithful round trips, weights-only loading, atomic saves that survive SIGKILL,
promote/rollback history, and distinct versions for concurrent writers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liverec.core.features import EVENT_TYPE_IDS, event_type_id
from liverec.core.schema import EventType
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.registry.registry import ModelRegistry, RegistryError
from support.world import ITEM_IDS, Trained, plant_pickle, rows_of, same_weights, state_of

# Registry writers run in children forked from one helper interpreter (torch imported once), so
# they can be killed mid-write cheaply and repeatedly. Its protocol is lines on stdout/stdin.
WORKER = r"""
import os, random, signal, sys, time

import torch

torch.set_num_threads(1)
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.registry.registry import ModelRegistry

mode, root = sys.argv[1], sys.argv[2]
reg = ModelRegistry(root)
if mode == "crash":  # a child saves and promotes in a loop until it is SIGKILLed, once per round
    rounds, seed, n_items = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    model = SASRec(TransformerConfig(n_items=n_items, d_model=64, n_layers=1, n_heads=1))
    vocab = [f"i{k}" for k in range(n_items)]
    rng = random.Random(seed)
    for r in range(rounds):
        pid = os.fork()
        if pid == 0:
            try:
                while True:
                    reg.promote(reg.save(model, vocab, {"round": r}))
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.02, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print(f"killed {r}", flush=True)
        sys.stdin.readline()  # the test inspects the registry, then lets us go on
elif mode == "concurrent":  # two children save `per` versions each, starting at the same instant
    per = int(sys.argv[3])
    model = SASRec(TransformerConfig(n_items=50, d_model=16, n_layers=1, n_heads=1))
    vocab = [f"i{k}" for k in range(50)]
    start = time.time() + 0.5
    pids = []
    for w in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                while time.time() < start:
                    pass
                for k in range(per):
                    reg.save(model, vocab, extra={"writer": w, "k": k})
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    print("done", *[os.waitpid(p, 0)[1] for p in pids], flush=True)
"""
VERSION = re.compile(r"v\d{6}")


def worker(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_save_list_meta_load_round_trip(tmp_path: Path, trained: Trained) -> None:
    """A loaded version is the saved model (weights, text buffer, config, scores), with its vocab,
    metrics, parent and extra metadata; versions are numbered in order."""
    reg = ModelRegistry(tmp_path / "registry")
    assert reg.list_versions() == [] and reg.live() is None and reg.history() == []
    net = trained.fresh()
    metrics = {"val": {"ndcg@10": 0.5}, "test": {"ndcg@10": 0.25}, "best_epoch": 3}
    v1 = reg.save(net, trained.vocab, metrics, extra={"note": "first"})
    v2 = reg.save(net, trained.vocab, {"val": {"ndcg@10": 0.6}}, parent=v1)
    assert (v1, v2) == ("v000001", "v000002") and reg.list_versions() == [v1, v2]

    meta = reg.meta(v1)
    assert meta["version"] == v1 and meta["kind"] == "transformer" and meta["note"] == "first"
    assert meta["config"] == net.config.to_dict()
    assert meta["metrics"] == metrics and meta["parent"] is None
    assert reg.meta(v2)["parent"] == v1 and isinstance(meta["created_at"], float)

    snap = reg.load(v1)
    assert snap.version == v1 and snap.vocab == trained.vocab == ITEM_IDS
    assert snap.meta == meta and snap.model.config == net.config
    assert same_weights(state_of(snap.model), state_of(net))
    assert torch.count_nonzero(snap.model.text_emb) > 0  # the text buffer travels with the weights
    assert not snap.model.training
    seq = rows_of(net, trained.vocab, ["cooking-1", "cooking-2"])
    assert torch.equal(snap.model.score_last(seq), net.score_last(seq))

    with pytest.raises(RegistryError, match="no live model"):
        reg.load()
    reg.promote(v2)
    assert reg.load().version == v2
    for bad in (lambda: reg.meta("v000099"), lambda: reg.load("v000099"), lambda: reg.promote("v000099")):
        with pytest.raises(RegistryError, match="no version 'v000099'"):
            bad()
    with pytest.raises(ValueError, match="vocab has 2 ids"):
        reg.save(net, ["a", "b"])
    assert reg.list_versions() == [v1, v2]


def test_loading_is_weights_only(tmp_path: Path, trained: Trained) -> None:
    """A weights file holding a pickled object that runs code on unpickling is refused, and the
    code never runs; a version with unreadable metadata cannot be promoted."""
    reg = ModelRegistry(tmp_path / "registry")
    version = reg.save(trained.fresh(), trained.vocab)
    weights = reg.versions_dir / version / "weights.pt"
    marker = tmp_path / "code-ran"
    plant_pickle(weights, marker)
    loaded = torch.load(weights, weights_only=False)  # the planted file really runs code ...
    loaded["id_emb.weight"].close()
    assert marker.exists()
    marker.unlink()

    with pytest.raises(RegistryError, match="unreadable"):  # ... but the registry never unpickles it
        reg.load(version)
    assert not marker.exists()

    other = reg.save(trained.fresh(), trained.vocab)
    (reg.versions_dir / other / "meta.json").write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable"):
        reg.promote(other)
    assert reg.live() is None


def test_promote_and_rollback_keep_a_history(tmp_path: Path, trained: Trained) -> None:
    """Promotions stack the previous live version; rollbacks pop it; with none left, RegistryError."""
    reg = ModelRegistry(tmp_path / "registry")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    v1, v2, v3 = (reg.save(trained.fresh(), trained.vocab) for _ in range(3))
    reg.promote(v1)
    assert (reg.live(), reg.history()) == (v1, [])
    reg.promote(v2)
    reg.promote(v2)  # promoting the live version changes nothing
    reg.promote(v3)
    assert (reg.live(), reg.history()) == (v3, [v1, v2])
    assert reg.rollback() == v2
    assert (reg.live(), reg.history()) == (v2, [v1])
    assert reg.rollback() == v1
    assert (reg.live(), reg.history()) == (v1, [])
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    assert reg.live() == v1  # a failed rollback leaves LIVE alone
    state = json.loads(reg.live_file.read_text())
    assert state["version"] == v1 and isinstance(state["updated_at"], float)


def check_registry(reg: ModelRegistry, checked: set[str], n_items: int) -> None:
    """Everything visible is complete: each version loads in full, LIVE is JSON naming one of them,
    and the only other entries are hidden `.tmp-*` folders."""
    names = [p.name for p in reg.versions_dir.iterdir()] if reg.versions_dir.is_dir() else []
    assert all(VERSION.fullmatch(n) or n.startswith(".tmp-") for n in names), names
    versions = reg.list_versions()
    assert sorted(n for n in names if not n.startswith(".")) == versions
    for v in versions:
        if v not in checked:
            snap = reg.load(v)
            assert snap.meta["version"] == v and len(snap.vocab) == snap.model.config.n_items == n_items
            checked.add(v)
    if reg.live_file.exists():
        state = json.loads(reg.live_file.read_text())
        assert state["version"] in versions
        assert set(state["history"]) <= set(versions)


def test_sigkill_mid_save_never_leaves_a_visible_half_written_version(tmp_path: Path) -> None:
    """A writer saving and promoting a 14 MB model in a loop is SIGKILLed at random moments, eight times:
    after every kill each listed version loads in full and LIVE is valid JSON naming one of them;
    half-written snapshots exist only as `.tmp-*` folders, which listing ignores. Saving works after."""
    reg = ModelRegistry(tmp_path / "registry")
    n_items, rounds = 8000, 8
    proc = worker("crash", reg.root, rounds, 0, n_items)
    checked: set[str] = set()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for r in range(rounds):
            assert proc.stdout.readline().strip() == f"killed {r}"
            check_registry(reg, checked, n_items)
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        leftovers = [p for p in reg.versions_dir.iterdir() if p.name.startswith(".tmp-")]
        assert leftovers, "no kill landed mid-save: the test did not exercise a crash"
        assert checked and reg.live() in checked
        last = max(int(v[1:]) for v in checked)
        snap = reg.load()
        assert reg.save(snap.model, snap.vocab) == f"v{last + 1:06d}"
    finally:
        shutil.rmtree(reg.root)  # hundreds of MB: do not keep them in pytest's tmp folders


def test_concurrent_saves_from_two_processes_get_distinct_versions(tmp_path: Path) -> None:
    """Two processes saving at once never share or overwrite a version: 2 x 15 saves, 30 versions,
    each holding exactly the metadata its writer gave it."""
    reg = ModelRegistry(tmp_path / "registry")
    per = 15
    proc = worker("concurrent", reg.root, per)
    out, _ = proc.communicate(timeout=120)
    assert out.split() == ["done", "0", "0"], out
    versions = reg.list_versions()
    assert versions == [f"v{k:06d}" for k in range(1, 2 * per + 1)]
    written = []
    for v in versions:
        meta = reg.meta(v)
        assert meta["version"] == v
        written.append((meta["writer"], meta["k"]))
        assert len(reg.load(v).vocab) == 50
    assert sorted(written) == [(w, k) for w in range(2) for k in range(per)]
    assert not [p for p in reg.versions_dir.iterdir() if p.name.startswith(".")]


def test_a_snapshot_from_before_star_ratings_loads_and_scores_as_it_did(tmp_path: Path) -> None:
    """Older code had no star rows in the event-type table and embedded every rating as the rating
    type. Its snapshots load (each star row starts as the rating row), so a star-rated history
    scores exactly as the old model scored a plain rating."""
    torch.manual_seed(0)
    net = SASRec(
        TransformerConfig(n_items=20, text_dim=0, d_model=16, n_layers=1, n_heads=1, event_types=True)
    )
    reg = ModelRegistry(tmp_path / "registry")
    version = reg.save(net, [f"i{k}" for k in range(20)])
    weights = reg.versions_dir / version / "weights.pt"
    state = torch.load(weights, weights_only=True)
    old_rows = len(EVENT_TYPE_IDS) + 1  # padding + one row per event type, no stars
    state["type_emb.weight"] = state["type_emb.weight"][:old_rows].clone()
    torch.save(state, weights)

    model = reg.load(version).model
    seq = torch.tensor([[3, 7, 1, 12]])
    rating = EVENT_TYPE_IDS[EventType.rating]
    stars = torch.tensor([[event_type_id(EventType.rating, v) for v in (1, 3, 4, 5)]])
    assert len(set(stars[0].tolist()) | {rating}) == 5  # four distinct star rows, none the rating row
    as_old = model.score_last(seq, torch.full_like(seq, rating))
    assert torch.equal(model.score_last(seq, stars), as_old)
    # not a table that ignores types: a click history scores differently
    assert not torch.allclose(
        model.score_last(seq, torch.full_like(seq, EVENT_TYPE_IDS[EventType.click])), as_old
    )


def test_a_snapshot_saved_with_options_since_removed_loads_only_if_they_were_off(tmp_path: Path) -> None:
    """Older code saved seven more model options. At the value where they did nothing they are dropped
    and the snapshot scores as saved; trained with one on, the version is unreadable, naming it."""
    torch.manual_seed(0)
    net = SASRec(TransformerConfig(n_items=20, text_dim=0, d_model=16, n_layers=1, n_heads=1)).eval()
    reg = ModelRegistry(tmp_path / "registry")
    version = reg.save(net, [f"i{k}" for k in range(20)])
    path = reg.versions_dir / version / "meta.json"
    meta = json.loads(path.read_text())
    off: dict[str, object] = {"input_dropout": 0.0, "label_smoothing": 0.0, "exclude_seen": False}
    off |= {"future": 1, "future_decay": 0.5, "block": "prenorm", "time_gaps": False}
    path.write_text(json.dumps({**meta, "config": {**meta["config"], **off}}))
    model = reg.load(version).model
    assert model.config == net.config
    seq = torch.tensor([[3, 7, 1, 12]])
    assert torch.equal(model.score_last(seq), net.score_last(seq))
    path.write_text(json.dumps({**meta, "config": {**meta["config"], **off, "block": "gated"}}))
    with pytest.raises(RegistryError, match="block = 'gated' was removed"):
        reg.load(version)
    path.write_text(json.dumps({**meta, "config": {**meta["config"], **off, "time_gaps": True}}))
    with pytest.raises(RegistryError, match="time_gaps = True was removed"):
        reg.load(version)
