"""Explanations (``?explain=true``) on MovieLens 100k: are the cited history items faithful, do they
make sense, and what do they cost.

Setup, in this process, on a fresh temporary SQLite store: ml-100k's items (titles, genres) and its
100k ratings; ``liverec train --epochs N --promote always`` trains the Transformer (with text) on
them; an `Engine` serves it (greedy, ``[rules] weight`` = ``--rules-weight``, search off).

1. Faithfulness, ``cited_removed_score_drop_share``: for ``--users`` users (default all),
   ``Engine.recommend(u, k, explain=True)``. For every item whose explanation cites a history
   item, the top-cited one is really removed: a copy of the user's `UserState` without that
   engagement, scored by the served model's ``score`` (the normal serving path, not
   ``Model.influence``). The share of those items whose score then falls below the served score.
   ``influence_abs_error_max``: the largest gap between a cited influence and that real drop.
2. Sense, ``tag_overlap_cited``: the share of those items that share a genre with their top-cited
   history item; ``tag_overlap_random``: the same for a history item drawn uniformly from the items
   the explanation chose from (the user's ``[explain] history`` newest), computed as its exact
   expectation (the share of them that share a genre), which has the random draw's mean and less
   noise. ``tag_overlap_gap`` = cited - random, with a 95% paired bootstrap interval over users
   (``tag_overlap_gap_ci``; each user's explanations move together).
3. Cost, ``p50_ms_plain``/``p99_ms_plain`` and ``_explain``: the catalog grows to ``--items`` with
   synthetic items (random unit text vectors placed in the store's embedding cache, as
   bench/search.py does: the vectors' values do not change the work); then ``Engine.recommend(u,
   k)`` without impressions, with and without explanations, interleaved, ``--calls`` each, for users
   drawn at random, under the server's garbage-collector settings.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/explain.py --data ../shared/data/ml-100k
Prints one JSON object on stdout (keys in bench/README.md); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from _load import emit, log, machine, percentile
from _server import liverec_train
from liverec.core.metrics import bootstrap_interval
from liverec.core.schema import Item
from liverec.core.state import UserState
from liverec.events.datasets import load_movielens
from liverec.model.text import ENCODER_NAME
from liverec.serve.app import server_gc
from liverec.serve.engine import Engine
from liverec.settings import Settings
from liverec.store import open_store
from liverec.store.base import embedding_key


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"), help="MovieLens 100k folder")
    p.add_argument("--epochs", type=int, default=20, help="liverec train --epochs")
    p.add_argument("--rules-weight", type=float, default=0.0, help="[rules] weight of the served model")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--users", type=int, default=0, help="users explained (0: all)")
    p.add_argument("--items", type=int, default=10_000, help="catalog size for the latency phase")
    p.add_argument("--calls", type=int, default=2_000, help="timed recommend() calls, each way")
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    return p.parse_args()


def load(root: Path, data: Path) -> dict[str, set[str]]:
    """ml-100k into a fresh store under ``root``; returns item id -> genres."""
    ds = load_movielens(data)
    settings = Settings(data_dir=root)
    with open_store(settings.store_url) as st:
        st.upsert_items(ds.items)
        for i in range(0, len(ds.events), 20_000):
            st.append(ds.events[i : i + 20_000])
    log(f"loaded {len(ds.items):,} items and {len(ds.events):,} ratings")
    return {it.item_id: set(it.tags) for it in ds.items}


def train(root: Path, epochs: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")}
    env |= {"LIVEREC_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    out = liverec_train(root, epochs, True, env)
    line = next((ln for ln in out.splitlines() if ln.startswith("registered")), "")
    log(f"trained in {time.perf_counter() - t0:.0f}s: {line}")
    return {"epochs": epochs, "train_s": round(time.perf_counter() - t0, 1), "registered": line}


def removed(user: UserState, position: int) -> UserState:
    """The user's state had the engagement at ``position`` never happened (built by hand)."""
    gone = copy.deepcopy(user)
    for values in (gone.items, gone.times, gone.types):
        del values[position]
    return gone


def explain_quality(engine: Engine, genres: dict[str, set[str]], args: argparse.Namespace) -> dict[str, Any]:
    """Phases 1 and 2: faithfulness of the top-cited item, and genre overlap against random."""
    users = sorted(u for u, st in engine.state.users.items() if st.items)
    if args.users:
        users = random.Random(args.seed).sample(users, min(args.users, len(users)))
    window = engine.settings.explain.history
    model = engine.recommender.model
    n = len(engine.catalog)
    explained = with_cited = dropped = 0
    errors: list[float] = []
    per_user: list[tuple[int, float, float]] = []  # (explanations with a citation, cited, random)
    kinds: Counter[str] = Counter()
    content = 0
    for u in tqdm(users, desc="explaining", unit="user", file=sys.stderr):
        rec = engine.recommend(u, args.k, log_impressions=False, explain=True)
        assert rec.explanations is not None and rec.slate is not None
        user = engine.state.get(u)
        assert user is not None
        ids = engine.catalog.ids
        pool = [ids[r] for r in list(user.items)[-window:]]  # what the explanation chose from
        mine, cited_hits, random_hits = 0, 0.0, 0.0
        for j, (item, why) in enumerate(zip(rec.items, rec.explanations, strict=True)):
            explained += 1
            kinds.update(r.kind for r in why.reasons)
            content += why.content is not None
            if not why.history:
                continue
            top = why.history[0]
            row = engine.catalog.row(item.item_id)
            assert row is not None
            served = float(rec.slate.scores[j])
            after = float(model.score(removed(user, top.position), n, u)[row])
            with_cited += 1
            dropped += after < served
            errors.append(abs((served - after) - top.influence))
            mine += 1
            tags = genres.get(item.item_id, set())
            cited_hits += bool(tags & genres.get(top.item_id, set()))
            random_hits += float(np.mean([bool(tags & genres.get(h, set())) for h in pool]))
        per_user.append((mine, cited_hits, random_hits))
    counts = np.array([m for m, _, _ in per_user], dtype=np.float64)
    cited = np.array([c for _, c, _ in per_user])
    rand = np.array([r for _, _, r in per_user])
    keep = counts > 0
    b = {"n_bootstrap_samples": args.bootstrap, "random_state": args.seed}
    total = counts.sum()
    return {
        "cited_removed_score_drop_share": round(dropped / max(with_cited, 1), 4),
        "tag_overlap_cited": round(float(cited.sum() / total), 4),
        "tag_overlap_random": round(float(rand.sum() / total), 4),
        "tag_overlap_gap": round(float((cited.sum() - rand.sum()) / total), 4),
        "tag_overlap_gap_ci": [
            round(x, 4) for x in bootstrap_interval((cited - rand)[keep], counts[keep], **b)
        ],
        "tag_overlap_cited_ci": [round(x, 4) for x in bootstrap_interval(cited[keep], counts[keep], **b)],
        "tag_overlap_random_ci": [round(x, 4) for x in bootstrap_interval(rand[keep], counts[keep], **b)],
        "influence_abs_error_max": float(f"{max(errors, default=0.0):.3g}"),
        "users": len(users),
        "explanations": explained,
        "with_cited_history": with_cited,
        "with_content_link": content,
        "reasons": dict(sorted(kinds.items())),
    }


def grow(engine: Engine, target: int, seed: int) -> int:
    """Synthetic items up to ``target`` catalog rows, their text vectors cached (random, unit)."""
    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama", "Romance", "Thriller", "Sci-Fi", "Horror", "Children's"]
    new = [
        Item(item_id=f"syn-{i}", title=f"Synthetic film {i}", tags=[genres[i % len(genres)]])
        for i in range(max(0, target - len(engine.catalog)))
    ]
    for start in range(0, len(new), 1000):
        chunk = new[start : start + 1000]
        vecs = rng.normal(size=(len(chunk), 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        keys = [embedding_key(ENCODER_NAME, it.content()) for it in chunk]
        engine.store.put_embeddings(dict(zip(keys, vecs, strict=True)))
        engine.upsert_items(chunk)
    return len(engine.catalog)


def latency(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    """Phase 3: in-process recommend() with and without explanations, interleaved."""
    users = [u for u, st in engine.state.users.items() if st.items]
    rng = random.Random(args.seed + 5)
    picks = [rng.choice(users) for _ in range(args.calls)]
    plain: list[float] = []
    explained: list[float] = []
    with server_gc(engine.settings.server.gc_threshold):
        for u in picks[:50]:  # warm-up
            engine.recommend(u, args.k, log_impressions=False)
            engine.recommend(u, args.k, log_impressions=False, explain=True)
        for i, u in enumerate(tqdm(picks, desc="timing", unit="call", file=os.sys.stderr)):  # type: ignore[attr-defined]
            for explain in (i % 2 == 0, i % 2 == 1):  # which goes first alternates
                t = time.perf_counter()
                engine.recommend(u, args.k, log_impressions=False, explain=explain)
                (explained if explain else plain).append((time.perf_counter() - t) * 1000)
    out = {
        "p50_ms_plain": round(percentile(plain, 50), 3),
        "p99_ms_plain": round(percentile(plain, 99), 3),
        "p50_ms_explain": round(percentile(explained, 50), 3),
        "p99_ms_explain": round(percentile(explained, 99), 3),
    }
    out["p99_ratio"] = round(out["p99_ms_explain"] / out["p99_ms_plain"], 2)
    return out | {
        "calls": len(plain),
        "items": len(engine.catalog),
        "threads": engine.settings.server.compute_threads,
    }


def main() -> None:
    args = parse_args()
    out: dict[str, Any] = {
        "benchmark": "explain",
        "machine": machine(),
        "params": vars(args) | {"data": str(args.data)},
    }
    root = Path(tempfile.mkdtemp(prefix="liverec-explain-"))
    try:
        genres = load(root, args.data)
        out["train"] = train(root, args.epochs)
        settings = Settings(data_dir=root, search={"enabled": False}, rules={"weight": args.rules_weight})
        engine = Engine(settings).start(background=False)
        try:
            out["model"] = engine.model_version
            log(f"serving {engine.model_version}; explaining ...")
            out |= explain_quality(engine, genres, args)
            log(f"growing the catalog to {args.items:,} items ...")
            grow(engine, args.items, args.seed)
            out |= latency(engine, args)
        finally:
            engine.close()
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main()
