"""A seeded synthetic world: items with readable text, users with hidden tastes, and a click model.

The world is the ground truth the engine never sees. Items belong to a genre and have a few
attributes (mood, pace, era) that are written into their title and description, so a text encoder
can tell genres apart. A user's taste is a hidden vector over the same features; how a user reacts
to a served slate follows a position-based model: an item at rank p is examined with probability
``(1 + p) ** -position_decay``, and an examined item is clicked with probability
``sigmoid(affinity + click_bias)``. Clicks may lead to add-to-cart, purchase and a dwell time that
grows with affinity; examined items that are not clicked are sometimes skipped explicitly.

Two kinds of non-stationarity are built in (both off by default): ``drift`` rotates each user's
taste by that many radians per visit towards a new random taste, and ``arrival_rate`` adds that
many new items per `tick` on average. `oracle_slate` and `expected_clicks` give the best possible
slate and the expected clicks of any slate, for regret.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Genre:
    name: str
    kind: str  # what the item is, e.g. "noir thriller"
    adjectives: tuple[str, ...]  # title words
    nouns: tuple[str, ...]
    topics: tuple[str, ...]  # "... about {topic}"


GENRES: tuple[Genre, ...] = (
    Genre(
        "noir",
        "noir thriller",
        ("Midnight", "Crimson", "Silent", "Broken", "Hollow", "Rainy"),
        ("Harbor", "Alibi", "Witness", "Street", "Verdict", "Confession"),
        (
            "a detective chasing a killer through rain-soaked streets",
            "a crooked cop protecting a missing witness",
            "a jewel heist that goes terribly wrong",
            "a lawyer who discovers her client is guilty",
        ),
    ),
    Genre(
        "scifi",
        "space opera",
        ("Stellar", "Distant", "Quantum", "Orbital", "Neon", "Last"),
        ("Frontier", "Colony", "Nebula", "Starship", "Android", "Signal"),
        (
            "a starship crew stranded beyond the last colony",
            "an android who dreams of Earth",
            "first contact on a frozen moon",
            "a rebellion against a galactic empire",
        ),
    ),
    Genre(
        "romance",
        "love story",
        ("Summer", "Tender", "Paper", "Golden", "Secret", "Second"),
        ("Letters", "Hearts", "Promise", "Vows", "Kiss", "Chances"),
        (
            "two strangers who fall in love over one summer",
            "a wedding planner who falls for the best man",
            "childhood sweethearts meeting again after twenty years",
            "love letters found in an old bookshop",
        ),
    ),
    Genre(
        "fantasy",
        "epic fantasy",
        ("Ember", "Iron", "Forgotten", "Shadow", "Elven", "Sunken"),
        ("Crown", "Dragon", "Throne", "Kingdom", "Sword", "Spellbook"),
        (
            "a young mage hunting the last dragon",
            "rival queens fighting for an enchanted throne",
            "a cursed sword that chooses its bearer",
            "elves and dwarves uniting against a dark lord",
        ),
    ),
    Genre(
        "horror",
        "horror story",
        ("Pale", "Rotting", "Whispering", "Cursed", "Bloody", "Hungry"),
        ("House", "Cellar", "Chapel", "Doll", "Asylum", "Woods"),
        (
            "a haunted house that feeds on its guests",
            "a village where the dead return at night",
            "a possessed doll in an abandoned asylum",
            "campers hunted by something in the woods",
        ),
    ),
    Genre(
        "comedy",
        "comedy",
        ("Absurd", "Lucky", "Clumsy", "Cheeky", "Awkward", "Hilarious"),
        ("Wedding", "Roommates", "Office", "Weekend", "Vacation", "Family"),
        (
            "a hapless office temp who becomes CEO by accident",
            "three roommates and one very confused goat",
            "a family road trip where everything goes wrong",
            "a best man who loses the rings, the groom and the car",
        ),
    ),
    Genre(
        "cooking",
        "cookbook",
        ("Rustic", "Smoky", "Fresh", "Spicy", "Sweet", "Hearty"),
        ("Kitchen", "Pantry", "Feast", "Oven", "Table", "Harvest"),
        (
            "weeknight recipes from a small trattoria",
            "slow-cooked stews, soups and fresh bread",
            "street food from the markets of Bangkok",
            "baking sourdough, pastries and cakes at home",
        ),
    ),
    Genre(
        "history",
        "history book",
        ("Ancient", "Imperial", "Lost", "Revolutionary", "Medieval", "Forgotten"),
        ("Empire", "Legion", "Dynasty", "Republic", "Crusade", "Pharaohs"),
        (
            "the rise and fall of a Roman legion",
            "the merchants and bankers who built Venice",
            "the pharaohs, priests and pyramids of ancient Egypt",
            "the revolution that toppled a French king",
        ),
    ),
    Genre(
        "sports",
        "sports drama",
        ("Final", "Underdog", "Perfect", "Winning", "Golden", "Last"),
        ("Season", "Match", "Inning", "Comeback", "Goal", "Round"),
        (
            "an underdog football team chasing the championship",
            "a boxer training for one last fight",
            "a rookie pitcher in the baseball world series",
            "a marathon runner coming back from injury",
        ),
    ),
    Genre(
        "science",
        "popular science book",
        ("Hidden", "Living", "Wild", "Deep", "Invisible", "Curious"),
        ("Ocean", "Forest", "Planet", "Reef", "Universe", "Genome"),
        (
            "the hidden life of coral reefs and deep-sea creatures",
            "how trees in a forest talk to each other through fungi",
            "black holes, galaxies and the origin of the universe",
            "the genes and cells that make us human",
        ),
    ),
    Genre(
        "kids",
        "children's picture book",
        ("Little", "Sleepy", "Happy", "Brave", "Tiny", "Silly"),
        ("Bear", "Bunny", "Balloon", "Puppy", "Dinosaur", "Kitten"),
        (
            "a little bear who learns to share his honey",
            "a bunny who is afraid of the dark",
            "a tiny dinosaur looking for a friend at school",
            "a puppy and a kitten counting stars at bedtime",
        ),
    ),
    Genre(
        "business",
        "business book",
        ("Smart", "Lean", "Bold", "Agile", "Effective", "Disruptive"),
        ("Startup", "Habits", "Leader", "Strategy", "Markets", "Negotiation"),
        (
            "building a software startup from a garage",
            "the habits of effective leaders and managers",
            "negotiation tactics for salaries and contracts",
            "investing in stock markets for the long term",
        ),
    ),
)

# Attribute name -> words for its negative and positive side (a value in [-1, 1] picks the side).
ATTRIBUTES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("mood", ("dark", "bleak", "brooding"), ("warm", "uplifting", "playful")),
    ("pace", ("slow-burning", "meditative", "leisurely"), ("fast-paced", "gripping", "breathless")),
    ("era", ("classic", "timeless", "old-school"), ("modern", "contemporary", "fresh")),
)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class SimItem:
    """A catalog item with its hidden truth (genre row, attribute values, quality)."""

    item_id: str
    genre: int
    attrs: np.ndarray  # (A,) in [-1, 1]
    quality: float  # hidden appeal to everyone (what popularity can learn)
    title: str
    text: str
    tags: list[str]
    created_step: int = 0

    def payload(self) -> dict[str, Any]:
        """The item as the API takes it (``POST /v1/items``); quality stays hidden."""
        attributes: dict[str, Any] = {"genre": GENRES[self.genre].name}
        for (name, _, _), v in zip(ATTRIBUTES, self.attrs, strict=True):
            attributes[name] = round(float(v), 2)
        return {
            "item_id": self.item_id,
            "title": self.title,
            "text": self.text,
            "tags": self.tags,
            "attributes": attributes,
        }


@dataclass
class SimUser:
    """A user and their hidden taste: a vector over genres then attributes."""

    user_id: str
    taste: np.ndarray  # (G + A,)
    interests: tuple[int, ...]  # the genres they strongly like (at creation)
    target: np.ndarray  # the taste they drift towards
    visits: int = 0


@dataclass(frozen=True)
class SimEvent:
    """One piece of feedback the world produced for a served item."""

    item_id: str
    type: str  # an EventType value
    position: int
    value: float | None = None


@dataclass
class Response:
    """What a user did with one slate."""

    user_id: str
    events: list[SimEvent] = field(default_factory=list)
    examined: int = 0
    clicks: int = 0


class World:
    """Seeded synthetic catalog, users and click model; every draw comes from the seed.

    ``taste_strength`` is how much more a user likes their interest genres (in logits), and
    ``n_interests`` the (min, max) number of such genres per user: together they set how much a
    personalised list can beat a random one.
    """

    def __init__(
        self,
        n_items: int = 500,
        n_users: int = 300,
        seed: int = 0,
        n_interests: tuple[int, int] = (2, 3),
        taste_strength: float = 4.0,
        quality_sd: float = 0.5,
        click_bias: float = -4.5,
        position_decay: float = 0.7,
        skip_rate: float = 0.1,
        cart_offset: float = -1.0,
        purchase_offset: float = 0.5,
        dwell_base_s: float = 4.0,
        drift: float = 0.0,
        arrival_rate: float = 0.0,
    ) -> None:
        if drift < 0 or arrival_rate < 0:
            raise ValueError("drift and arrival_rate cannot be negative")
        lo, hi = n_interests
        if not 1 <= lo <= hi <= len(GENRES):
            raise ValueError(f"n_interests must be 1 <= min <= max <= {len(GENRES)}")
        self.seed = seed
        self.n_interests = n_interests
        self.taste_strength = taste_strength
        self.quality_sd = quality_sd
        self.click_bias = click_bias
        self.position_decay = position_decay
        self.skip_rate = skip_rate
        self.cart_offset = cart_offset
        self.purchase_offset = purchase_offset
        self.dwell_base_s = dwell_base_s
        self.drift = drift
        self.arrival_rate = arrival_rate

        # Independent streams, so e.g. the catalog does not change when n_users does.
        streams = np.random.SeedSequence(seed).spawn(4)
        self._item_rng, user_rng, self._resp_rng, self._arrival_rng = (
            np.random.default_rng(s) for s in streams
        )
        self.n_genres = len(GENRES)
        self.n_attrs = len(ATTRIBUTES)
        # Some genres are more popular than others (Zipf-like), in a seed-dependent order.
        weights = 1.0 / np.arange(1, self.n_genres + 1) ** 0.7
        self.genre_share = weights[self._item_rng.permutation(self.n_genres)] / weights.sum()
        self.step = 0

        self.items: list[SimItem] = []
        self._index: dict[str, int] = {}
        self._features = np.zeros((0, self.n_genres + self.n_attrs))
        self._quality = np.zeros(0)
        self._add_items(n_items)
        self.users = [self._new_user(f"u{i:05d}", user_rng) for i in range(n_users)]
        self._users = {u.user_id: u for u in self.users}

    # -- catalog --------------------------------------------------------------------------------
    def _new_item(self, item_id: str) -> SimItem:
        rng = self._item_rng
        g = int(rng.choice(self.n_genres, p=self.genre_share))
        genre = GENRES[g]
        attrs = rng.uniform(-1.0, 1.0, self.n_attrs)
        quality = float(rng.normal(0.0, self.quality_sd))
        title = f"{rng.choice(genre.adjectives)} {rng.choice(genre.nouns)}"
        if rng.random() < 0.3:
            title = f"The {title}"
        sides = [neg if v < 0 else pos for (_, neg, pos), v in zip(ATTRIBUTES, attrs, strict=True)]
        mood, pace, era = (str(rng.choice(words)) for words in sides)
        article = "An" if era[0] in "aeiou" else "A"
        text = (
            f"{title}: a {pace}, {mood} {genre.kind} about {rng.choice(genre.topics)}. {article} {era} read."
        )
        return SimItem(item_id, g, attrs, quality, title, text, [genre.name, mood, pace, era], self.step)

    def _add_items(self, n: int) -> list[SimItem]:
        start = len(self.items)
        new = [self._new_item(f"i{start + j:05d}") for j in range(n)]
        self.items.extend(new)
        for j, it in enumerate(new):
            self._index[it.item_id] = start + j
        feats = np.zeros((n, self.n_genres + self.n_attrs))
        for j, it in enumerate(new):
            feats[j, it.genre] = 1.0
            feats[j, self.n_genres :] = it.attrs
        self._features = np.vstack([self._features, feats])
        self._quality = np.concatenate([self._quality, [it.quality for it in new]])
        return new

    def item(self, item_id: str) -> SimItem:
        return self.items[self._index[item_id]]

    def tick(self, steps: int = 1) -> list[SimItem]:
        """Advance world time; returns the items that arrived meanwhile (``arrival_rate`` per step)."""
        self.step += steps
        n = int(self._arrival_rng.poisson(self.arrival_rate * steps)) if self.arrival_rate > 0 else 0
        return self._add_items(n) if n else []

    # -- users ----------------------------------------------------------------------------------
    def _random_taste(self, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, ...]]:
        lo, hi = self.n_interests
        n = int(rng.integers(lo, hi + 1))
        interests = tuple(int(g) for g in rng.choice(self.n_genres, n, replace=False, p=self.genre_share))
        genres = rng.normal(0.0, 0.4, self.n_genres)
        genres[list(interests)] = self.taste_strength * rng.uniform(0.8, 1.2, n)
        attrs = rng.normal(0.0, 0.7, self.n_attrs)
        return np.concatenate([genres, attrs]), interests

    def _new_user(self, user_id: str, rng: np.random.Generator) -> SimUser:
        taste, interests = self._random_taste(rng)
        target, _ = self._random_taste(rng)
        return SimUser(user_id, taste, interests, target)

    def user(self, user_id: str) -> SimUser:
        return self._users[user_id]

    def _drift(self, user: SimUser) -> None:
        """Rotate the taste by ``drift`` radians towards its target (norm kept); retarget on arrival."""
        t = user.taste
        norm = float(np.linalg.norm(t))
        u = t / norm
        d = user.target - (user.target @ u) * u  # the target's part orthogonal to the taste
        d_norm = float(np.linalg.norm(d))
        angle = math.atan2(d_norm, float(user.target @ u))
        if d_norm < 1e-12 or angle <= self.drift:
            user.taste = user.target / np.linalg.norm(user.target) * norm
            user.target, _ = self._random_taste(self._resp_rng)
            return
        user.taste = norm * (math.cos(self.drift) * u + math.sin(self.drift) * d / d_norm)

    # -- the click model ------------------------------------------------------------------------
    def _rows(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.fromiter((self._index[i] for i in item_ids), dtype=np.int64, count=len(item_ids))

    def affinity(self, user_id: str, item_ids: Sequence[str] | None = None) -> np.ndarray:
        """Hidden affinity (logit before the bias) of a user for items (default: all)."""
        rows = slice(None) if item_ids is None else self._rows(item_ids)
        return self._features[rows] @ self.user(user_id).taste + self._quality[rows]

    def examination(self, positions: np.ndarray | int) -> np.ndarray:
        """Probability that the item at a (0-based) position is looked at."""
        return (1.0 + np.asarray(positions, dtype=np.float64)) ** -self.position_decay

    def click_prob(self, user_id: str, item_ids: Sequence[str] | None = None) -> np.ndarray:
        """P(click | examined) per item."""
        return sigmoid(self.affinity(user_id, item_ids) + self.click_bias)

    def expected_click_prob(self, user_id: str, item_id: str, position: int) -> float:
        """P(click) for an item shown at ``position``: examination times click-if-examined."""
        return float(self.examination(position) * self.click_prob(user_id, [item_id])[0])

    def expected_clicks(self, user_id: str, slate: Sequence[str]) -> float:
        """Expected number of clicks on a slate (the reward regret is measured in)."""
        if not slate:
            return 0.0
        exam = self.examination(np.arange(len(slate)))
        return float(exam @ self.click_prob(user_id, slate))

    def oracle_slate(self, user_id: str, k: int, exclude: Iterable[str] = ()) -> list[str]:
        """The slate with the most expected clicks: items by click probability, best first.

        Examination falls with position and does not depend on the item, so sorting is optimal.
        """
        p = self.click_prob(user_id)
        rows = [self._index[i] for i in exclude if i in self._index]
        p[rows] = -1.0
        top = np.argsort(-p, kind="stable")[: min(k, len(p) - len(set(rows)))]
        return [self.items[r].item_id for r in top.tolist()]

    def respond(self, user_id: str, slate: Sequence[str]) -> Response:
        """Draw what the user does with a served slate (best first); then their taste drifts."""
        rng = self._resp_rng
        user = self.user(user_id)
        out = Response(user_id)
        if slate:
            aff = self.affinity(user_id, slate)
            examined = rng.random(len(slate)) < self.examination(np.arange(len(slate)))
            clicked = examined & (rng.random(len(slate)) < sigmoid(aff + self.click_bias))
            out.examined, out.clicks = int(examined.sum()), int(clicked.sum())
            for pos, item_id in enumerate(slate):
                if clicked[pos]:
                    out.events.extend(self._after_click(item_id, pos, float(aff[pos]), rng))
                elif examined[pos] and rng.random() < self.skip_rate:
                    out.events.append(SimEvent(item_id, "skip", pos))
        user.visits += 1
        if self.drift > 0:
            self._drift(user)
        return out

    def _after_click(self, item_id: str, pos: int, aff: float, rng: np.random.Generator) -> list[SimEvent]:
        events = [SimEvent(item_id, "click", pos)]
        logit = aff + self.click_bias
        if rng.random() < sigmoid(logit + self.cart_offset):
            events.append(SimEvent(item_id, "add_to_cart", pos))
            if rng.random() < sigmoid(logit + self.purchase_offset):
                events.append(SimEvent(item_id, "purchase", pos))
        # Dwell grows with affinity: ~4 s for an indifferent user, ~20 s at affinity 3.
        dwell = self.dwell_base_s * math.exp(0.5 * aff) * float(rng.lognormal(0.0, 0.5))
        events.append(SimEvent(item_id, "dwell", pos, round(min(dwell, 3600.0), 1)))
        return events
