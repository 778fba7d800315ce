"""`Explainer`: why each item of a served list is there, in a structure and in one sentence.

What it cites is measured on the served model, not read from it: the history items that raised an
item's score are those whose removal from the live sequence lowers it (`Model.influence`, one
batched forward for the whole list), so leaving a cited item out really does lower the score. The
content link is the history item nearest in MiniLM text (the vectors the model or the search index
already holds; nothing is encoded per request). The other reasons are the serving rules that
applied: popular or trending now, a new-item slot, the policy exploring, the popularity fallback, a
filler, the sequential rules' term, and the exclusions. A search result carries its matched query
terms and the ranker's per-feature contributions instead.

Called under the engine's read lock, with the very model and state that served the list.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.features import event_type_of
from liverec.core.schema import EventType
from liverec.core.state import UserState
from liverec.model.base import Model
from liverec.model.popularity import PopularityCooc
from liverec.model.sequential import SequentialModel
from liverec.policy.shuffle import RANDOMIZED
from liverec.search.features import FEATURES
from liverec.search.index import tokenize
from liverec.settings import ExplainSettings

if TYPE_CHECKING:
    from liverec.search.ranker import LinearRanker
    from liverec.serve.recommender import Recommendation
    from liverec.serve.search import SearchResult, SearchService

SLOT_POLICY = re.compile(r"\+new\d+$")  # `with_new_slots` names a slate's policy so
VERBS: dict[EventType, str] = {
    EventType.click: "clicked",
    EventType.add_to_cart: "added to your cart",
    EventType.purchase: "bought",
    EventType.rating: "rated",
    EventType.dwell: "spent time on",
    EventType.like: "liked",
}
COSINE = FEATURES.index("cosine")


@dataclass(frozen=True)
class Cited:
    """A history item that raised the score: ``influence`` = score minus the score without it."""

    item_id: str
    influence: float
    position: int  # in the live sequence, 0 = oldest (as GET /v1/users/{id}/history lists it)


@dataclass(frozen=True)
class ContentLink:
    item_id: str  # the user's history item nearest in text
    similarity: float  # cosine of the MiniLM text vectors


@dataclass(frozen=True)
class Reason:
    kind: str  # popular, trending, new_item_slot, exploration, fallback, filler, rules, business_rule
    detail: str


@dataclass(frozen=True)
class SearchMatch:
    matched_terms: list[str]  # query tokens (as the BM25 index tokenizes) found in the item's text
    semantic: float  # the query-item cosine the ranker used
    features: dict[str, float]  # per feature: ranker weight * feature value


@dataclass(frozen=True)
class Explanation:
    sentence: str
    history: list[Cited] = field(default_factory=list)
    content: ContentLink | None = None
    reasons: list[Reason] = field(default_factory=list)
    search: SearchMatch | None = None


class Explainer:
    def __init__(
        self,
        settings: ExplainSettings,
        catalog: Catalog,
        popularity: PopularityCooc,
        search: SearchService | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.popularity = popularity
        self.search = search

    # -- recommendations ------------------------------------------------------------------------
    def recommendation(
        self,
        rec: Recommendation,
        user: UserState | None,
        model: Model,
        user_id: str = "",
        exclude_seen: bool = True,
    ) -> list[Explanation]:
        """One explanation per item of ``rec``, which ``model`` served to ``user`` (None: unknown)."""
        s, catalog = self.settings, self.catalog
        n = len(catalog)
        slate = rec.slate
        rows = slate.rows if slate is not None else np.asarray(catalog.rows(i.item_id for i in rec.items))
        history = user is not None and bool(user.items)
        items = np.fromiter(user.items, np.int64) if user is not None and history else np.zeros(0, np.int64)
        positions = list(range(max(0, len(items) - s.history), len(items)))
        served = None if slate is None else slate.scores  # (R,) the model's scores, as served
        influence = model.influence(user, rows, positions, n, user_id, served)  # (P, R)
        content = self._content(model, rows, items)
        reasons = self._reasons(rec, rows, user, model, history, exclude_seen)
        index = None if slate is None else slate.index
        out = []
        for j in range(len(rows)):
            cited = self._cited(user, influence[:, j], positions) if user is not None else []
            moved = index is not None and int(index[j]) != j
            line = self._sentence(cited, content[j], reasons[j], user, moved)
            out.append(Explanation(line, cited, content[j], reasons[j]))
        return out

    def _cited(self, user: UserState, drops: np.ndarray, positions: list[int]) -> list[Cited]:
        """The top `max_cited` positions by influence above `min_influence`, largest first."""
        order = np.argsort(-drops, kind="stable")[: self.settings.max_cited]
        ids = self.catalog.ids
        return [
            Cited(ids[user.items[positions[p]]], round(float(drops[p]), 6), positions[p])
            for p in order.tolist()
            if drops[p] > self.settings.min_influence
        ]

    def _content(self, model: Model, rows: np.ndarray, history: np.ndarray) -> list[ContentLink | None]:
        """Per row: the distinct history item nearest in text, if at least `content_min_similarity`."""
        none: list[ContentLink | None] = [None] * len(rows)
        if not len(history):
            return none
        seen = np.unique(history)  # (H,)
        vecs = self._text(model, np.concatenate([rows, seen]))  # (R + H, Dt) unit or zero rows
        if vecs is None:
            return none
        has = np.abs(vecs).max(axis=1) > 0  # (R + H,) the item has text
        sims = vecs[: len(rows)] @ vecs[len(rows) :].T  # (R, H) cosines
        usable = has[: len(rows), None] & has[None, len(rows) :] & (rows[:, None] != seen[None, :])
        sims = np.where(usable, sims, -np.inf)
        best = sims.argmax(axis=1)
        out = none
        for j, b in enumerate(best.tolist()):
            sim = float(sims[j, b])
            if math.isfinite(sim) and sim >= self.settings.content_min_similarity:
                out[j] = ContentLink(self.catalog.ids[int(seen[b])], round(sim, 4))
        return out

    def _text(self, model: Model, rows: np.ndarray) -> np.ndarray | None:
        """(len(rows), Dt) text vectors: the served model's, else the search index's, else None."""
        vecs = model.text_vectors(rows)
        if vecs is not None:
            return vecs
        if self.search is not None and len(self.search.searcher.semantic):
            return self.search.searcher.semantic.vectors(rows)
        return None

    def _reasons(
        self,
        rec: Recommendation,
        rows: np.ndarray,
        user: UserState | None,
        model: Model,
        history: bool,
        exclude_seen: bool,
    ) -> list[list[Reason]]:
        """The non-model reasons per item, in a fixed order of kinds."""
        standing = self._standing(rows)
        placement = _placement(rec, len(rows))
        rules = self._rules(rows, user, model) if history else [None] * len(rows)
        exclusions = self._exclusions(user, exclude_seen)
        out: list[list[Reason]] = []
        for j, item in enumerate(rec.items):
            mine = [*standing[j]]
            if not history:
                mine.append(Reason("fallback", "no history yet: popularity served the list"))
            if item.filler:
                mine.append(Reason("filler", "the model had no evidence for it: it pads the list to k"))
            mine += [r for r in (placement[j], rules[j]) if r is not None]
            out.append(mine + exclusions)
        return out

    def _standing(self, rows: np.ndarray) -> list[list[Reason]]:
        """Per row: "popular" (among the most engaged-with now) and "trending" (its share of recent
        engagement well above its long-run share, and among the most engaged-with recently)."""
        s, pop, n = self.settings, self.popularity, len(self.catalog)
        popular = pop.popular.at(pop.clock, n)  # (N,) decayed engagement
        recent = pop.trending.at(pop.clock, n)  # (N,) the same with a short half-life
        mine, mine_recent = popular[rows], recent[rows]  # (R,)
        rank = 1 + (popular[None, :] > mine[:, None]).sum(axis=1)  # (R,) among all items now
        rank_recent = 1 + (recent[None, :] > mine_recent[:, None]).sum(axis=1)  # (R,)
        total, total_recent = float(popular.sum()), float(recent.sum())
        rise = np.zeros(len(rows))  # share of recent engagement over share of long-run engagement
        if total > 0 and total_recent > 0:
            np.divide(mine_recent / total_recent, mine / total, out=rise, where=mine > 0)
        out: list[list[Reason]] = []
        for j in range(len(rows)):
            here = []
            if mine[j] > 0 and rank[j] <= s.popular_top:
                here.append(
                    Reason("popular", f"#{rank[j]} of the {s.popular_top} most engaged-with items now")
                )
            if mine_recent[j] > 0 and rank_recent[j] <= s.popular_top and rise[j] >= s.trending_ratio:
                text = f"#{rank_recent[j]} lately, {rise[j]:.1f}x its long-run share of engagement"
                here.append(Reason("trending", text))
            out.append(here)
        return out

    def _rules(self, rows: np.ndarray, user: UserState | None, model: Model) -> list[Reason | None]:
        """Per row: what the sequential rules' term adds, when the model has them and they have counts."""
        if not isinstance(model, SequentialModel) or model.rules is None or user is None:
            return [None] * len(rows)
        rules, w = model.rules, model.rules_weight
        prior, counts = rules.log_prior_at(user.items, rows, len(self.catalog))  # (R,) each
        out: list[Reason | None] = []
        for p, c in zip(prior.tolist(), counts.tolist(), strict=True):
            gain = w * (p - math.log(rules.eps))  # over an item never seen after the user's items
            detail = (
                f"others went on to it after your recent items (count {c:.3g}): the rules term adds "
                f"{w * p:+.3f}, {gain:+.3f} over an item never seen after them"
            )
            out.append(Reason("rules", detail) if c > 0 else None)
        return out

    def _exclusions(self, user: UserState | None, exclude_seen: bool) -> list[Reason]:
        out = []
        if exclude_seen and user is not None and user.seen:
            out.append(
                Reason("business_rule", f"{len(user.seen)} item(s) you already interacted with are excluded")
            )
        hidden = len(self.catalog) - int(self.catalog.available.sum())
        if hidden:
            out.append(Reason("business_rule", f"{hidden} unavailable item(s) are hidden"))
        return out

    def _sentence(
        self,
        cited: list[Cited],
        link: ContentLink | None,
        reasons: list[Reason],
        user: UserState | None,
        moved: bool,
    ) -> str:
        """One line for a person: what they did, the text link, then the serving reasons that changed
        what they see (``moved``: exploration put the item elsewhere than its score rank)."""
        kinds = {r.kind for r in reasons}
        clauses = []
        if cited and user is not None:
            clauses.append("because you " + _and(self._actions(cited, user)))
        if link is not None:
            clauses.append(f"similar in text to {self._title(link.item_id)}")
        if "fallback" in kinds:
            clauses.append("popular lately (you have no history yet)")
        if "new_item_slot" in kinds:
            clauses.append("new in the catalog (a slot kept for new items)")
        if "exploration" in kinds and moved:
            clauses.append("moved here by exploration, to learn about other options")
        if "filler" in kinds:
            clauses.append("shown to fill the list")
        if "trending" in kinds:
            clauses.append("trending now")
        elif "popular" in kinds and not cited and "fallback" not in kinds:
            clauses.append("popular now")
        if not clauses:
            clauses.append("ranked by the model from your recent activity")
        line = "; ".join(clauses)
        return line[0].upper() + line[1:] + "."

    def _actions(self, cited: list[Cited], user: UserState) -> list[str]:
        """ "rated A and B", "clicked C": the cited items grouped by the verb of their event type."""
        by_verb: dict[str, list[str]] = {}
        for c in cited:
            kind, _ = event_type_of(user.types[c.position]) if c.position < len(user.types) else (None, None)
            verb = VERBS.get(kind, "engaged with") if kind is not None else "engaged with"
            by_verb.setdefault(verb, []).append(self._title(c.item_id))
        return [f"{verb} {_and(titles)}" for verb, titles in by_verb.items()]

    def _title(self, item_id: str) -> str:
        row = self.catalog.row(item_id)
        return item_id if row is None else self.catalog.title(row)

    # -- search ---------------------------------------------------------------------------------
    def search_results(self, result: SearchResult, ranker: LinearRanker) -> list[Explanation]:
        """One explanation per result: the query terms it matched, the semantic match and what each
        ranker feature contributed (``ranker`` is the one that ranked the list)."""
        terms = list(dict.fromkeys(tokenize(result.query)))
        lexical = self.search.searcher.lexical if self.search is not None else None
        weights = ranker.w  # (F,)
        out = []
        for j, item in enumerate(result.items):
            row = self.catalog.row(item.item_id)
            have = lexical.terms(row) if lexical is not None and row is not None else frozenset()
            matched = [t for t in terms if t in have]
            x = result.features[j].astype(np.float64)  # (F,)
            contrib = {f: round(float(w * v), 4) for f, w, v in zip(FEATURES, weights, x, strict=True)}
            semantic = round(float(x[COSINE]), 4)
            reasons = []
            if result.policy == RANDOMIZED:
                reasons.append(
                    Reason(
                        "exploration",
                        f"the top results were shown in random order, propensity {item.propensity:.3g}",
                    )
                )
            match = SearchMatch(matched, semantic, contrib)
            out.append(Explanation(_search_sentence(match, reasons), [], None, reasons, match))
        return out


def _placement(rec: Recommendation, n: int) -> list[Reason | None]:
    """Per position: "new_item_slot" (a slot row: candidate index past the policy's candidates) or
    "exploration" (the policy put it elsewhere than the score order would, or might not have)."""
    slate, context = rec.slate, rec.context or {}
    if slate is None or slate.index is None:
        return [None] * n
    n_candidates = int(context.get("candidates", n))
    slots = SLOT_POLICY.search(rec.policy) is not None
    policy = SLOT_POLICY.sub("", rec.policy)
    out: list[Reason | None] = []
    for j, (index, item) in enumerate(zip(slate.index.tolist(), rec.items, strict=True)):
        if slots and index >= n_candidates:
            out.append(Reason("new_item_slot", f"shown in a slot kept for new items ({rec.policy})"))
        elif item.propensity < 1.0 or index != j:
            where = f"placed it at {j + 1} (by score: {index + 1}), propensity {item.propensity:.3g}"
            out.append(Reason("exploration", f"policy {policy} {where}"))
        else:
            out.append(None)
    return out


def _search_sentence(match: SearchMatch, reasons: list[Reason]) -> str:
    clauses = []
    if match.matched_terms:
        clauses.append("matches " + _and([f"'{t}'" for t in match.matched_terms]) + " in its text")
    clauses.append(f"semantic match {match.semantic:.2f}")
    top = max(match.features.items(), key=lambda kv: kv[1])
    if top[1] > 0:
        clauses.append(f"ranked mostly by {top[0]} ({top[1]:+.2f})")
    if reasons:
        clauses.append("shown in random order to learn which positions people look at")
    line = "; ".join(clauses)
    return line[0].upper() + line[1:] + "."


def _and(parts: list[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
