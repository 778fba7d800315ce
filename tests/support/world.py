"""Shared fixtures (registered in the root conftest): a tiny world with sequential and taste
structure, a tiny SASRec trained on it (with real MiniLM text), and an `Engine`/app on a tmp SQLite
store serving it.

The world: three genres (space, cooking, football) of eight items each, every item with a title
that says its genre. Users stay in one genre; most walk its items in a cycle (after ``g-k`` comes
``g-(k+1 mod 8)``), the rest browse it. So the next item is predictable from the sequence, and
the genre from the text.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from liverec.core.schema import Event, EventType, Item
from liverec.core.split import LeaveOneOut, Sequences, leave_one_out
from liverec.core.vocab import Vocab
from liverec.model.sequential import SequentialModel
from liverec.model.text import TextEncoder
from liverec.model.transformer import SASRec
from liverec.registry.registry import ModelRegistry
from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from liverec.settings import ServerSettings, Settings
from liverec.store import open_store
from liverec.trainer.offline import TrainConfig, TrainResult, fit_transformer

TITLES: dict[str, list[str]] = {
    "space": [
        "Starship crew explores a distant galaxy",
        "Astronauts stranded on a colony on Mars",
        "Alien invasion fleet approaches Earth",
        "A rocket launch to the space station",
        "Black hole mission beyond the solar system",
        "Robots and spaceships in an interstellar war",
        "The first moon landing of a lunar rover",
        "Comet mining expedition in deep space",
    ],
    "cooking": [
        "Easy pasta recipes for weeknight dinners",
        "Baking sourdough bread at home",
        "A chef's guide to French sauces",
        "Vegetarian curry and rice cookbook",
        "Grilling steak and barbecue ribs",
        "Chocolate cake and dessert baking",
        "Japanese sushi and ramen kitchen",
        "Soups and stews for cold evenings",
    ],
    "football": [
        "Championship final decided by a late goal",
        "The striker who scored a hat-trick",
        "A goalkeeper saves a penalty kick",
        "Transfer window: club signs a midfielder",
        "World Cup soccer team tactics",
        "Coach fired after a losing season",
        "Derby match between rival football clubs",
        "Young players at a soccer academy",
    ],
}
GENRES = list(TITLES)
PER_GENRE = 8
ITEM_IDS = [f"{g}-{k}" for g in GENRES for k in range(PER_GENRE)]
ITEM_TEXT = {f"{g}-{k}": TITLES[g][k] for g in GENRES for k in range(PER_GENRE)}
# texts for items that arrive after training, one per genre
NEW_TEXT = {
    "new-space": "A spacecraft travels to a faraway planet",
    "new-cooking": "Homemade pizza dough and tomato sauce recipe",
    "new-football": "Penalty shootout in the soccer cup final",
}
MODEL: dict[str, object] = {"d_model": 32, "n_layers": 1, "n_heads": 2, "max_len": 16, "dropout": 0.0}
MODEL["id_dropout"] = 0.25  # items hidden per step: the model must also read their text
TRAIN = TrainConfig(epochs=12, batch_size=64, lr=1e-2, eval_every=12, patience=1, seed=0, threads=1)
T0 = time.time() - 7 * 86_400.0  # event times: a week ago, well inside the server's accepted range
POLL_S = 0.05  # how often a test engine looks for a newly promoted model
WAIT_S = 30.0  # bounded waits for background work (the CPU is shared)
# the popularity fallback's answer: crowd users with one click each, most clicks first
CROWD = {"football-5": 6, "cooking-2": 4, "space-7": 2}


def genre(item_id: str) -> str:
    return item_id.rsplit("-", 1)[0]


def next_item(item_id: str) -> str:
    """The item that follows ``item_id`` in this world."""
    g, k = item_id.rsplit("-", 1)
    return f"{g}-{(int(k) + 1) % PER_GENRE}"


def walks(n_users: int, seed: int = 0) -> list[list[str]]:
    """Per user, 4 to 7 items of one genre: two in three users walk its cycle from a random start,
    the others browse it in random order (so the genre, hence the text, predicts too)."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n_users):
        g, length = GENRES[u % len(GENRES)], int(rng.integers(4, 8))
        if u % 3 == (u // 3) % 3:
            out.append([f"{g}-{k}" for k in rng.permutation(PER_GENRE)[:length]])
        else:
            start = int(rng.integers(PER_GENRE))
            out.append([f"{g}-{(start + j) % PER_GENRE}" for j in range(length)])
    return out


def world_sequences(n_users: int = 300, seed: int = 0) -> Sequences:
    vocab = Vocab(ITEM_IDS)
    items = [np.asarray(vocab.rows(w), dtype=np.int64) for w in walks(n_users, seed)]
    return Sequences(
        users=[f"u{n}" for n in range(n_users)],
        items=items,
        times=[T0 + np.arange(len(s), dtype=np.float64) for s in items],
        vocab=vocab,
        texts=dict(ITEM_TEXT),
    )


def world_items(ids: Sequence[str] = ITEM_IDS) -> list[Item]:
    return [Item(item_id=i, title=ITEM_TEXT.get(i) or NEW_TEXT.get(i, ""), created_at=T0) for i in ids]


def click(user: str, item: str, ts: float, **fields: Any) -> Event:
    return Event(user_id=user, item_id=item, type=EventType.click, timestamp=ts, **fields)


def crowd_events() -> list[Event]:
    return [click(f"crowd-{item}-{n}", item, T0 + n) for item, count in CROWD.items() for n in range(count)]


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows_of(model: SASRec, vocab: Sequence[str], ids: Sequence[str]) -> torch.Tensor:
    """(1, T) model indices of ``ids`` under ``vocab`` (model index = vocab row + 1)."""
    index = {item_id: r + 1 for r, item_id in enumerate(vocab)}
    return torch.tensor([[index[i] for i in ids]], dtype=torch.long)


def wait_until(check: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


# -- the world, encoded and trained once per session ---------------------------------------------
@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return TextEncoder()


@pytest.fixture(scope="session")
def item_vectors(encoder: TextEncoder) -> np.ndarray:
    """(24, 384) float32 MiniLM embeddings of the world's titles, in `ITEM_IDS` order."""
    return encoder.encode([ITEM_TEXT[i] for i in ITEM_IDS])


@dataclass
class Trained:
    model: SASRec  # never mutate: take `fresh()`
    vocab: list[str]
    split: LeaveOneOut
    result: TrainResult

    def fresh(self) -> SASRec:
        return copy.deepcopy(self.model).eval()


@pytest.fixture(scope="session")
def trained(item_vectors: np.ndarray) -> Trained:
    """A tiny SASRec trained on the world with text (id dropout makes it lean on the text too)."""
    split = leave_one_out(world_sequences(), min_len=3)
    threads = torch.get_num_threads()
    model, result = fit_transformer(split, item_vectors, MODEL, TRAIN)
    torch.set_num_threads(threads)
    return Trained(model, split.seqs.vocab.to_list(), split, result)


# -- a live engine serving it --------------------------------------------------------------------
def make_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, server=ServerSettings(reload_poll_s=POLL_S))


def fill_store(
    settings: Settings, items: Sequence[Item], events: Sequence[Event], encoder: TextEncoder
) -> None:
    """Items and events into the SQLite store, and the items' text into its embedding cache (what
    `liverec train` leaves behind), so the engine's own encoder finds them cached."""
    with open_store(settings.store_url) as st:
        st.upsert_items(items)
        if events:
            st.append(events)
        encoder.encode_cached([it.content() for it in items], st)


def start_engine(settings: Settings, encoder: TextEncoder) -> Engine:
    engine = Engine(settings).start()
    assert engine.manager is not None
    engine.manager.encoder = encoder  # the same real encoder, already loaded
    return engine


@dataclass
class Served:
    """An app (TestClient) over an engine on a tmp SQLite store, with v1 of the trained model live."""

    client: TestClient
    engine: Engine
    registry: ModelRegistry
    settings: Settings
    trained: Trained

    @property
    def model(self) -> SequentialModel:
        assert self.engine.manager is not None and self.engine.manager.current is not None
        return self.engine.manager.current

    def click(self, user: str, item: str, ts: float) -> None:
        body = {"user_id": user, "item_id": item, "type": "click", "timestamp": ts}
        r = self.client.post("/v1/events", json=body)
        assert r.status_code == 200, r.text

    def recs(self, user: str, k: int = 5) -> dict[str, Any]:
        r = self.client.get(f"/v1/users/{user}/recommendations", params={"k": k})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def rec_ids(self, user: str, k: int = 5) -> list[str]:
        return [i["item_id"] for i in self.recs(user, k)["items"]]


@contextlib.contextmanager
def serving(settings: Settings, trained: Trained, encoder: TextEncoder) -> Iterator[Served]:
    """The world's store under ``settings``, v1 of the trained model live, an app over an engine."""
    fill_store(settings, world_items(), crowd_events(), encoder)
    registry = ModelRegistry(settings.registry_path)
    registry.promote(registry.save(trained.fresh(), trained.vocab, {"val": trained.result.best_val}))
    engine = start_engine(settings, encoder)
    try:
        with TestClient(create_app(settings, engine)) as client:
            yield Served(client, engine, registry, settings, trained)
    finally:
        engine.close()


@pytest.fixture
def served(tmp_path: Path, trained: Trained, encoder: TextEncoder) -> Iterator[Served]:
    with serving(make_settings(tmp_path / "data"), trained, encoder) as s:
        yield s


# -- ways a snapshot on disk can go bad -----------------------------------------------------------
class OpensAFile:
    """Unpickling this with plain pickle calls ``open(path, "w")``: it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def plant_pickle(weights: Path, marker: Path) -> None:
    """Replace a weights file with one that runs code (creates ``marker``) if fully unpickled."""
    torch.save({"id_emb.weight": OpensAFile(marker)}, weights)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
