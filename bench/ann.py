"""Million-item catalogs: the served Transformer's candidates from its item index (`[retrieval]`)
against scoring every item, in this process, through `Engine.recommend` (no impressions logged).

Setup: ml-100k (1,682 films with MiniLM text, 100k ratings) into a fresh SQLite store;
``liverec train --epochs N`` trains the Transformer with text; an `Engine` serves it (greedy, search
off). The catalog then grows to ``--items`` rows, the growth shaped on the trained table so the
index meets the vectors a trained model really holds:

- each synthetic item has a parent, a trained film drawn at random; its id embedding is
  ``mean + sqrt(1 - s^2) (parent - mean) + s e``, e Gaussian with the covariance of the trained id
  embeddings, s = ``--noise`` (0.5): films around their parents with the trained table's mean and
  covariance, so the norms spread as the trained ones do (0.27-0.82 on ml-100k);
- its text vector is the same mix of the parent's MiniLM vector and noise with the covariance of
  the 1,682 real MiniLM vectors, made unit again: text-like (anisotropic, clustered), never
  encoded (1M texts through MiniLM would take hours here);
- a ``--text-only`` share has no id embedding: new items, scored from their text until trained.

One grown net serves two `SequentialModel`s: one with the index (``ann_above`` = 1) and one that
scores every row; `Engine.recommend` is timed with each in turn (its model swapped by reference, as a
hot reload does), interleaved, for users drawn at random. ``ann_recall@10``: the share of the exact
path's top 10 (same model, same masked catalog: seen items out) the index path serves, over the
report users. The index's ``nprobe`` is chosen on a disjoint set of validation users (the smallest
of ``--nprobes`` whose validation recall reaches ``--target``), then reported on the others.

Run:  HF_HUB_OFFLINE=1 nice .venv/bin/python bench/ann.py --data ../shared/data/ml-100k
Prints one JSON object on stdout (keys in bench/README.md); progress goes to stderr. The core is
`ann_figures(...)`, importable (bench/scale.py).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _load import emit, log, machine, percentile
from liverec.core.ann import IvfIndex
from liverec.model.sequential import SequentialModel
from liverec.model.transformer import SASRec
from liverec.serve.app import server_gc
from liverec.serve.engine import Engine
from liverec.settings import RetrievalSettings, Settings

K = 10


@dataclass
class Grown:
    ann: SequentialModel  # serves from the index
    exact: SequentialModel  # the same net, every row scored
    trained: int  # items with trained weights (ml-100k's): catalog rows below this
    text_only: int


def prepare(root: Path, data: Path, epochs: int) -> dict[str, Any]:
    """ml-100k into a fresh store under ``root`` and a trained model in its registry (as
    bench/explain.py does); nothing when ``root`` already holds a live model."""
    from explain import load, train  # the same setup as the explanations benchmark

    settings = Settings(data_dir=root)
    if (settings.registry_path / "LIVE").exists():
        return {"reused": str(root)}
    load(root, data)
    return train(root, epochs)


def around(x: np.ndarray, parent: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """(P, D) float32 rows near ``x[parent]`` (rows ``x`` (M, D)) with the mean and covariance of ``x``:
    ``mean + sqrt(1 - s^2) (x[parent] - mean) + s e``, e ~ N(0, cov(x))."""
    mean = x.mean(axis=0)
    cov = np.cov(x.astype(np.float64), rowvar=False) + 1e-6 * np.eye(x.shape[1])
    e = rng.standard_normal((len(parent), x.shape[1])) @ np.linalg.cholesky(cov).T
    return (mean + np.sqrt(1 - s * s) * (x[parent] - mean) + s * e).astype(np.float32)


def grow(
    engine: Engine, n_items: int, noise: float, text_only: float, seed: int, settings: RetrievalSettings
) -> Grown:
    """The served net grown to ``n_items`` catalog rows (`bench/ann.py` docstring), served twice."""
    served = engine.recommender.model
    assert isinstance(served, SequentialModel), "train a model first"
    net: SASRec = served.net
    trained = net.config.n_items
    extra = n_items - len(engine.catalog)
    rng = np.random.default_rng(seed)
    ids = [f"syn-{i}" for i in range(extra)]
    for item_id in ids:
        engine.catalog.ensure(item_id)
    ids_w = net.id_emb.weight.detach().numpy()[1:]  # (M, D) trained id embeddings
    text_w = net.text_emb.numpy()[1:]  # (M, Dt) their MiniLM vectors
    net.grow(extra)
    start = trained + 1  # model index of the first synthetic item
    step = 100_000
    with torch.no_grad():
        for lo in range(0, extra, step):
            n = min(step, extra - lo)
            parent = rng.integers(0, trained, n)
            own = around(ids_w, parent, noise, rng)
            own[rng.random(n) < text_only] = 0.0  # untrained: no id embedding (id_dropout 0)
            text = around(text_w, parent, noise, rng)
            text /= np.linalg.norm(text, axis=1, keepdims=True)
            net.id_emb.weight[start + lo : start + lo + n] = torch.from_numpy(own)
            net.text_emb[start + lo : start + lo + n] = torch.from_numpy(text)
    vocab = [*served.vocab.to_list(), *ids]
    t0 = time.perf_counter()
    version, fallback, rules, weight = (
        served.registry_version,
        served.fallback,
        served.rules,
        served.rules_weight,
    )
    ann = SequentialModel(net, vocab, version, fallback, 0, rules, weight, settings)
    ann.sync(engine.catalog)
    log(f"grown to {len(engine.catalog):,} items; table and index in {time.perf_counter() - t0:.1f}s")
    exact = SequentialModel(net, vocab, version, fallback, 0, rules, weight)
    exact.sync(engine.catalog)
    n_text_only = int((net.id_emb.weight[start:].abs().sum(dim=1) == 0).sum())
    return Grown(ann, exact, trained, n_text_only)


def top_lists(engine: Engine, model: SequentialModel, users: list[str]) -> list[list[str]]:
    engine.recommender.model = model
    return [[i.item_id for i in engine.recommend(u, K, log_impressions=False).items] for u in users]


def recall(got: list[list[str]], want: list[list[str]]) -> np.ndarray:
    """(U,) share of each exact top-k the other list holds."""
    return np.array([len(set(g) & set(w)) / max(len(w), 1) for g, w in zip(got, want, strict=True)])


def timed(engine: Engine, models: dict[str, SequentialModel], picks: list[str]) -> dict[str, list[float]]:
    """Milliseconds of `Engine.recommend` per model, interleaved (which goes first alternates)."""
    out: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    with server_gc(engine.settings.server.gc_threshold):
        for i, u in enumerate(picks):
            for name in names if i % 2 == 0 else names[::-1]:
                engine.recommender.model = models[name]
                t = time.perf_counter()
                engine.recommend(u, K, log_impressions=False)
                out[name].append((time.perf_counter() - t) * 1000)
    return out


def plain_ivf_recall(
    grown: Grown, engine: Engine, users: list[str], want: list[list[str]], nprobe: int
) -> float:
    """Recall@10 of a plain inner-product IVF (no norm coordinate) over the same table, cells and
    probes, masked the same way."""
    index = grown.ann.index
    assert index is not None
    table = grown.exact._table.numpy()
    ivf = IvfIndex(table.shape[1], 1, nprobe, index.mips.ivf.cells, "ip", index.settings.sample)
    ivf.build(table, np.arange(len(table), dtype=np.int64))
    ids = engine.catalog.ids
    got = []
    for u in users:
        user = engine.state.get(u)
        assert user is not None
        h = grown.exact.retrieve(user, len(ids)).user_vector
        assert h is not None
        mask = engine.catalog.available.copy()
        mask[list(user.seen)] = False
        found = ivf.search(h, K, mask)
        got.append([ids[r] for r in (found[0] if found else [])])
    return float(recall(got, want).mean())


def ann_figures(
    n_items: int = 1_000_000,
    *,
    data: Path = Path("../shared/data/ml-100k"),
    root: Path | None = None,
    epochs: int = 20,
    noise: float = 0.5,
    text_only: float = 0.1,
    nlist: int = 0,
    nprobes: tuple[int, ...] = (8, 16, 32, 64, 128),
    target: float = 0.99,
    validation: int = 300,
    calls: int = 1_000,
    seed: int = 0,
    compare_plain: bool = True,
    rules_weight: float = 0.0,
    new_item_slots: int = 0,
) -> dict[str, Any]:
    """The headline figures (``ann_recall@10``, ``ann_p50_ms``, ``ann_p99_ms``, ``exact_p50_ms``,
    ``exact_p99_ms``, ``build_s``) and the rest under ``ann`` (keys in bench/README.md), so another
    benchmark can merge them into its own object. ``root``: a data dir to train in and keep (reused
    when it already holds a live model); None: a temporary one."""
    detail: dict[str, Any] = {}
    detail["params"] = {
        "n_items": n_items, "epochs": epochs, "noise": noise, "text_only": text_only, "nlist": nlist,
        "nprobes": list(nprobes), "target": target, "validation_users": validation, "calls": calls,
        "seed": seed, "rules_weight": rules_weight, "new_item_slots": new_item_slots,
    }  # fmt: skip
    keep = root is not None
    root = root or Path(tempfile.mkdtemp(prefix="liverec-ann-"))
    try:
        detail["train"] = prepare(root, data, epochs)
        settings = Settings(
            data_dir=root,
            search={"enabled": False},
            server={"snapshots": False},  # the synthetic catalog is in memory only: no snapshot of it
            rules={"weight": rules_weight},
            policy={"new_item_slots": new_item_slots},
        )
        engine = Engine(settings).start(background=False)
        try:
            detail |= measure(
                engine,
                n_items,
                noise,
                text_only,
                nlist,
                nprobes,
                target,
                validation,
                calls,
                seed,
                compare_plain,
            )
        finally:
            engine.close()
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    head = ["ann_recall@10", "ann_p50_ms", "ann_p99_ms", "exact_p50_ms", "exact_p99_ms", "build_s"]
    return {key: detail.pop(key) for key in head} | {"ann": detail}


def measure(
    engine: Engine,
    n_items: int,
    noise: float,
    text_only: float,
    nlist: int,
    nprobes: tuple[int, ...],
    target: float,
    validation: int,
    calls: int,
    seed: int,
    compare_plain: bool,
) -> dict[str, Any]:
    settings = RetrievalSettings(ann_above=1, nlist=nlist, nprobe=nprobes[0])
    log(f"serving {engine.model_version}; growing the catalog to {n_items:,} items ...")
    grown = grow(engine, n_items, noise, text_only, seed, settings)
    index = grown.ann.index
    assert index is not None and index.mips.ready
    users = sorted(u for u, st in engine.state.users.items() if st.items)
    random.Random(seed).shuffle(users)
    val, report = users[:validation], users[validation:]
    log(f"exact lists for {len(users)} users ...")
    exact_val, exact_report = top_lists(engine, grown.exact, val), top_lists(engine, grown.exact, report)
    tuning = []
    chosen: int | None = None  # the smallest reaching the target, else the largest
    timing_picks = [random.Random(seed + 2).choice(val) for _ in range(200)]
    for p in nprobes:  # on the validation users only: recall, and latency through the same path
        index.settings = settings.model_copy(update={"nprobe": p})
        r = float(recall(top_lists(engine, grown.ann, val), exact_val).mean())
        ms = timed(engine, {"ann": grown.ann}, timing_picks)["ann"]
        tuning.append(
            {
                "nprobe": p,
                "validation_recall@10": round(r, 4),
                "validation_p99_ms": round(percentile(ms, 99), 3),
            }
        )
        log(f"nprobe {p}: validation recall@10 {r:.4f}, p99 {percentile(ms, 99):.2f} ms")
        if r >= target and chosen is None:
            chosen = p
    chosen = chosen or nprobes[-1]
    index.settings = settings.model_copy(update={"nprobe": chosen})
    got = recall(top_lists(engine, grown.ann, report), exact_report)
    ids = engine.catalog.ids
    synthetic = np.mean([(engine.catalog.row(i) or 0) >= grown.trained for w in exact_report for i in w])
    log(f"nprobe {chosen}: report recall@10 {got.mean():.4f}; timing {calls} calls each way ...")
    rng = random.Random(seed + 1)
    picks = [rng.choice(report) for _ in range(calls)]
    ms = timed(engine, {"ann": grown.ann, "exact": grown.exact}, [*picks[:50], *picks])
    ann_ms, exact_ms = ms["ann"][50:], ms["exact"][50:]  # the first 50 of each warm up
    figures: dict[str, Any] = {
        "ann_recall@10": round(float(got.mean()), 4),
        "ann_p50_ms": round(percentile(ann_ms, 50), 3),
        "ann_p99_ms": round(percentile(ann_ms, 99), 3),
        "exact_p50_ms": round(percentile(exact_ms, 50), 3),
        "exact_p99_ms": round(percentile(exact_ms, 99), 3),
        "build_s": round(index.mips.ivf.build_s, 1),
        "index": index.status() | {"sample": settings.sample, "exact_below": settings.exact_below},
        "tuning": tuning,
        "recall_users": len(report),
        "recall_min": round(float(got.min()), 2),
        "recall_users_all_10": round(float((got == 1.0).mean()), 4),
        "exact_top10_synthetic_share": round(float(synthetic), 4),
        "items": len(ids),
        "trained_items": grown.trained,
        "text_only_items": grown.text_only,
        "calls": len(ann_ms),
        "threads": engine.settings.server.compute_threads,
    }
    figures["p99_speedup"] = round(figures["exact_p99_ms"] / figures["ann_p99_ms"], 1)
    rules = grown.exact.rules is not None
    if compare_plain and not rules and not engine.recommender.new_item_slots:  # top 10 by h.e alone
        # before any item is added: the same catalog as the exact lists
        log("plain inner-product IVF, same cells and probes ...")
        plain = plain_ivf_recall(grown, engine, report, exact_report, chosen)
        figures["plain_ivf_recall@10"] = round(plain, 4)
    figures |= add_item(engine, grown, report)
    return figures


def add_item(engine: Engine, grown: Grown, users: list[str]) -> dict[str, Any]:
    """A new item through the model's write path at full size (`sync` with its text, as
    `ModelManager.items_changed` does), timed; then whether both paths list it at once. Its text is
    the unit vector whose projection leans most towards a user's hidden state, and the user one
    for whom that lands in the exact top 10 (an untrained item rarely reaches anyone's)."""
    model, n = grown.ann, len(engine.catalog)
    assert model.net.text_proj is not None
    w = model.net.text_proj.weight.detach().numpy()  # (D, Dt)
    u, text, margin = users[0], np.zeros(w.shape[1], np.float32), -np.inf
    for candidate in users[:50]:
        user = engine.state.get(candidate)
        assert user is not None
        found = grown.exact.retrieve(user, n)
        assert found.user_vector is not None
        t = w.T @ found.user_vector  # (Dt,)
        t /= np.linalg.norm(t)
        mask = engine.catalog.available.copy()
        mask[list(user.seen)] = False
        tenth = float(found.top(mask, K)[1][-1])
        if float(found.user_vector @ (w @ t)) - tenth > margin:
            u, text, margin = candidate, t, float(found.user_vector @ (w @ t)) - tenth
    rng = np.random.default_rng(7)
    ms = []
    for k in range(21):  # the first grows the net by a quarter (spare rows); the rest take spare rows
        vec = rng.standard_normal(len(text)).astype(np.float32)
        row = engine.catalog.ensure(f"added-{k}")
        t = time.perf_counter()
        model.sync(engine.catalog, {row: vec / np.linalg.norm(vec)})
        ms.append((time.perf_counter() - t) * 1000)
    row = engine.catalog.ensure("added-online")
    t = time.perf_counter()
    model.sync(engine.catalog, {row: text})
    ms.append((time.perf_counter() - t) * 1000)
    grown.exact.sync(engine.catalog)  # the same net: it reads the new rows' text from there
    engine.recommender.model = model
    ann = [i.item_id for i in engine.recommend(u, K, log_impressions=False).items]
    engine.recommender.model = grown.exact
    exact = [i.item_id for i in engine.recommend(u, K, log_impressions=False).items]
    return {
        "add_item_ms_first": round(ms[0], 1),
        "add_item_ms_p50": round(percentile(ms[1:], 50), 2),
        "add_item_ms_max": round(max(ms[1:]), 2),
        "added_item_in_exact_top10": "added-online" in exact,
        "added_item_in_ann_top10": "added-online" in ann,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"), help="MovieLens 100k folder")
    p.add_argument("--items", type=int, default=1_000_000, help="catalog size")
    p.add_argument("--epochs", type=int, default=20, help="liverec train --epochs")
    p.add_argument(
        "--root", type=Path, default=None, help="data dir to train in and keep (reused if trained)"
    )
    p.add_argument("--noise", type=float, default=0.5, help="synthetic items' spread around their parents")
    p.add_argument(
        "--text-only", type=float, default=0.1, help="share of synthetic items without an id embedding"
    )
    p.add_argument("--nlist", type=int, default=0, help="index cells (0: the [retrieval] default)")
    p.add_argument("--nprobes", default="8,16,32,64,128", help="nprobe values tried, smallest first")
    p.add_argument(
        "--target", type=float, default=0.99, help="validation recall@10 the chosen nprobe reaches"
    )
    p.add_argument("--validation", type=int, default=300, help="users that tune nprobe (the rest report)")
    p.add_argument("--calls", type=int, default=1_000, help="timed recommend() calls, each way")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plain", action="store_true", help="skip the plain inner-product IVF comparison")
    p.add_argument("--rules-weight", type=float, default=0.0, help="[rules] weight of the served model")
    p.add_argument("--new-item-slots", type=int, default=0, help="[policy] new_item_slots")
    a = p.parse_args()
    emit(
        {"benchmark": "ann", "machine": machine()}
        | ann_figures(
            a.items,
            data=a.data,
            root=a.root,
            epochs=a.epochs,
            noise=a.noise,
            text_only=a.text_only,
            nlist=a.nlist,
            nprobes=tuple(int(x) for x in a.nprobes.split(",")),
            target=a.target,
            validation=a.validation,
            calls=a.calls,
            seed=a.seed,
            compare_plain=not a.no_plain,
            rules_weight=a.rules_weight,
            new_item_slots=a.new_item_slots,
        )
    )


if __name__ == "__main__":
    main()
