"""The sequential recommender: a causal Transformer over a user's interactions (SASRec-style),
scoring every item by dot product with item representations.

Reads bottom-up: attention and blocks, then the config, then the model. Conventions:
- item index 0 is padding; catalog row r is model index r + 1;
- sequences are left-padded, and positions count back from the newest interaction (0 = newest),
  so a batch can be padded to any length and serving reads the same positions as training;
- an item's representation = its id embedding + a learned projection of its text embedding, so an
  item with a title or description can be scored before anyone has touched it.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from liverec.core.features import EVENT_TYPE_IDS, N_EVENT_TYPES, RATING_STARS
from liverec.core.schema import EventType
from liverec.model.losses import NextItemLoss, loss_for
from liverec.settings import ModelSettings


class Dropout(nn.Module):
    """Inverted dropout drawn from a uniform: `nn.Dropout` in distribution, about twice as fast on a
    CPU, where torch's ``bernoulli_`` is slow."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * ((torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p)))


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.attn_drop = Dropout(dropout)
        self.resid_drop = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None, queries: int = 0) -> Tensor:
        """x (B, T, D) float32; mask (B, 1, T, T) bool, True = may attend, or None: no padding, plain
        causal attention. ``queries`` > 0: only the last that many positions attend (keys and values
        still cover all T): (B, queries, D)."""
        B, T, D = x.shape
        Q = queries or T
        if Q < T:  # queries for the last Q positions only; keys and values for all
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, T - Q :], w[:D], b[:D])  # (B, Q, D)
            k, v = F.linear(x, w[D:], b[D:]).split(D, dim=2)  # (B, T, D) each
        else:
            q, k, v = self.qkv(x).split(D, dim=2)
        q = q.reshape(B, Q, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, Q, Dh)
        k = k.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, Dh)
        v = v.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
        by_hand = self.training and self.dropout > 0  # SDPA's own dropout is 5x slower on a CPU
        if mask is None and Q > 1 and (Q < T or by_hand):
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril().expand(B, 1, T, T)
        if by_hand:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // self.n_heads))  # (B, H, Q, T)
            if mask is not None:
                att = att.masked_fill(~mask[:, :, T - Q :], -torch.inf)
            y = self.attn_drop(att.softmax(dim=-1)) @ v  # (B, H, Q, Dh)
        elif mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, :, T - Q :])
        else:  # no padding: the causal kernel (Q == T), or the newest position sees everything (Q == 1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=Q > 1)  # (B, H, Q, Dh)
        y = y.transpose(1, 2).contiguous().view(B, Q, D)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: attention then a GELU MLP, each with a residual."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), Dropout(dropout)
        )

    def forward(self, x: Tensor, mask: Tensor | None, queries: int = 0) -> Tensor:
        """(B, T, D) -> (B, T, D), or (B, queries, D): the last positions only (see attention)."""
        a = self.attn(self.ln1(x), mask, queries)
        x = (x[:, -queries:] if queries else x) + a
        return x + self.mlp(self.ln2(x))


# Options removed because no shipped configuration used them and no measurement favoured them
# (docs/model.md), each with the value at which it did nothing: a checkpoint that saved one at that
# value loads as it always did; one trained with it on is refused (`TransformerConfig.from_dict`).
REMOVED_OPTIONS: dict[str, object] = {
    "input_dropout": 0.0,
    "label_smoothing": 0.0,
    "exclude_seen": False,
    "future": 1,
    "future_decay": 0.5,
    "block": "prenorm",
    "time_gaps": False,
}


class TransformerConfig(ModelSettings):
    """The `[model]` settings (`ModelSettings`: every hyperparameter, its default and range) plus the
    catalog size, which the data decides. Checkpoints store it as a dict (`to_dict`, `from_dict`)."""

    n_items: int = Field(ge=0, description="catalog size without the padding row; grows with `SASRec.grow`")

    def to_dict(self) -> dict[str, object]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> TransformerConfig:
        """A config saved by `to_dict`, by this code or older code. A removed option (`REMOVED_OPTIONS`)
        at the value where it did nothing is dropped; at any other value it is an error naming it: the
        weights were trained with something this code no longer does."""
        fields = dict(saved)
        for name, off in REMOVED_OPTIONS.items():
            if name in fields and (value := fields.pop(name)) != off:
                raise ValueError(
                    f"model option {name} = {value!r} was removed (only {name} = {off!r} loads); "
                    "retrain this model without it"
                )
        return cls.model_validate(fields)


class SASRec(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        n = c.n_items + 1  # + padding row 0
        self.id_emb = nn.Embedding(n, c.d_model, padding_idx=0)
        # (D,) the id embedding of an item the model has not been trained on (see `id_dropout`)
        self.unk_id = nn.Parameter(torch.zeros(c.d_model)) if c.id_dropout > 0 else None
        self.text_emb: Tensor  # (N+1, Dt) float32, a buffer: saved with the weights, never trained
        self.register_buffer("text_emb", torch.zeros(n, max(c.text_dim, 1)), persistent=True)
        self.text_proj = nn.Linear(c.text_dim, c.d_model, bias=False) if c.text_dim else None
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        self.type_emb = nn.Embedding(N_EVENT_TYPES + 1, c.d_model, padding_idx=0) if c.event_types else None
        self.drop = Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c.d_model, c.n_heads, c.dropout) for _ in range(c.n_layers)])
        self.ln_f = nn.LayerNorm(c.d_model)
        self.criterion: NextItemLoss = loss_for(c)  # `model.losses`: no weights, nothing to save
        self._compiled: Callable[[Tensor, Tensor | None, bool], Tensor] | None = None  # see `compile_encoder`
        self.apply(self._init)
        if self.unk_id is not None:  # drawn last: the other weights start as they would without it
            nn.init.normal_(self.unk_id, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx].zero_()

    # -- items ----------------------------------------------------------------------------------
    def set_text(self, rows: Tensor, vectors: Tensor) -> None:
        """Text embeddings for model indices ``rows`` (R,) int64; ``vectors`` (R, Dt) float32."""
        with torch.no_grad():
            self.text_emb[rows] = vectors.to(self.text_emb.dtype)

    # the parameters `item_table` is made of (nothing else in the model reads them)
    TABLE_PARAMETERS = ("id_emb.weight", "text_proj.weight", "unk_id")

    def item_table(self, hide_ids: Tensor | None = None) -> Tensor:
        """(N+1, D) float32 item representations; ``hide_ids`` (N+1,) bool swaps those items' id
        embeddings for the unknown-item one (zeros when the model has none)."""
        ids = self.id_emb.weight
        if hide_ids is not None:
            unk = self.unk_id if self.unk_id is not None else ids.new_zeros(ids.shape[1])
            ids = torch.where(hide_ids.unsqueeze(1), unk, ids)
        if self.text_proj is None:
            return ids
        return ids + self.text_proj(self.text_emb)

    def item_rows(self, rows: Tensor) -> Tensor:
        """(R, D) `item_table` rows for model indices ``rows`` (R,) int64, computing only those."""
        ids = self.id_emb.weight[rows]
        return ids if self.text_proj is None else ids + self.text_proj(self.text_emb[rows])

    @torch.no_grad()
    def forget_ids(self, rows: Tensor) -> None:
        """Set the id embeddings of model indices ``rows`` (R,) int64 to an untrained item's: the
        unknown-item embedding, or zeros. Such an item is scored by its text alone."""
        self.id_emb.weight[rows] = 0.0 if self.unk_id is None else self.unk_id

    def grow(self, n_new: int) -> None:
        """Append ``n_new`` item rows in place, untrained (see `forget_ids`) until trained."""
        if n_new <= 0:
            return
        old = self.id_emb.weight.data
        new = torch.zeros(old.shape[0] + n_new, old.shape[1], dtype=old.dtype)
        new[: old.shape[0]] = old
        self.id_emb = nn.Embedding.from_pretrained(new, freeze=False, padding_idx=0)
        self.forget_ids(torch.arange(old.shape[0], new.shape[0]))
        text = torch.zeros(old.shape[0] + n_new, self.text_emb.shape[1], dtype=self.text_emb.dtype)
        text[: old.shape[0]] = self.text_emb
        self.text_emb = text
        self.config.n_items += n_new

    # -- sequences ------------------------------------------------------------------------------
    def forward(
        self,
        seq: Tensor,
        types: Tensor | None = None,
        table: Tensor | None = None,
        last: bool = False,
    ) -> Tensor:
        """Hidden states (B, T, D) float32 for left-padded item indices ``seq`` (B, T) int64
        (0 = padding); ``types`` (B, T) int64 event-type ids (see `core.features`), left-padded like
        ``seq``; ignored unless the config enables them (`event_types`).
        ``last``: only the newest position's state, (B, 1, D) (what serving and online steps need;
        the last block then skips the other positions' queries and MLP)."""
        T = seq.shape[1]
        if self.config.max_len < T:
            seq, T = seq[:, -self.config.max_len :], self.config.max_len
            types = types[:, -T:] if types is not None else None
        x = self._embed(seq, types, self.item_table() if table is None else table)  # (B, T, D)
        real = seq != 0  # (B, T)
        if bool(real.all()):  # e.g. one user's live sequence: no mask to build
            return (self._compiled or self.encode)(self.drop(x), None, last)
        x = self.drop(x) * real.unsqueeze(-1)
        return (self._compiled or self.encode)(x, real, last)

    def _embed(self, seq: Tensor, types: Tensor | None, table: Tensor) -> Tensor:
        """(B, T, D) inputs of the blocks: item representation, position (0 = the newest), type."""
        T = seq.shape[1]
        x = table[seq] * math.sqrt(self.config.d_model)  # (B, T, D)
        x = x + self.pos_emb(torch.arange(T - 1, -1, -1, device=seq.device))
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
        return x

    @torch.no_grad()
    def newest_without(
        self, seq: Tensor, types: Tensor | None, drops: Sequence[int], table: Tensor | None = None
    ) -> Tensor:
        """(1 + len(drops), D) float32: the newest hidden state of ``seq`` without its newest item,
        then, for each d in ``drops`` (1 <= d < T), without the item d places before the newest: as
        `forward` (``last=True``, eval) reads each of those shorter sequences. ``seq`` (1, T) int64
        without padding, 2 <= T <= max_len + 1: a live window and the next older item, which enters
        the window when one is left out.

        Causal attention and positions counted from the newest make the items older than the one
        left out read exactly as in ``seq`` without its newest item (the prefix). So all variants
        run as ONE packed sequence: the prefix once, then each variant's d newer items at their own
        positions, and a block mask (`packing`) lets each variant's items see the prefix items older
        than the one it leaves out and its own items, causally: T - 1 + sum(d) positions through
        the blocks once, instead of 1 + len(drops) whole sequences."""
        T = seq.shape[1]
        assert not self.training and seq.shape[0] == 1 and 2 <= T <= self.config.max_len + 1
        assert all(1 <= d < T for d in drops), (drops, T)
        table = self.item_table() if table is None else table
        src, pos, mask, outputs = packing(T, tuple(drops))  # (N,), (N,), (1, 1, N, N), rows read at the end
        x = table[seq[0, src]] * math.sqrt(self.config.d_model) + self.pos_emb(pos)  # (N, D)
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types[0, src])
        x = x[None]  # (1, N, D)
        last = len(self.blocks) - 1
        for k, block in enumerate(self.blocks):
            x = block(x, mask, outputs if k == last else 0)
        return self.ln_f(x)[0]  # (1 + V, D)

    def encode(self, x: Tensor, real: Tensor | None, last: bool = False) -> Tensor:
        """The Transformer proper: (B, T, D) embedded inputs and (B, T) bool non-padding (None: no
        padding) -> (B, T, D), or (B, 1, D) with ``last``. Its shapes never depend on the catalog, so
        `compile_encoder` can compile it once."""
        T = x.shape[1]
        mask = None
        if real is not None:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            mask = (causal & real.unsqueeze(1)) | torch.eye(T, dtype=torch.bool, device=x.device)
            mask = mask.unsqueeze(1)  # (B, 1, T, T); a position always sees itself (no empty rows)
        for k, block in enumerate(self.blocks):
            x = block(x, mask, 1 if last and k == len(self.blocks) - 1 else 0)
        return self.ln_f(x)

    def compile_encoder(self) -> None:
        """Compile `encode` with torch.compile (dynamic batch and length) after a one-off compile of
        tens of seconds; measure first (online steps with ``last=True`` gained nothing on a 2-core
        CPU). The item table stays eager, so a growing catalog never triggers recompilation."""
        self._compiled = torch.compile(self.encode, dynamic=True)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """`nn.Module.load_state_dict`, also reading weights saved before ratings were embedded by
        their stars (see `with_star_rows`)."""
        return super().load_state_dict(with_star_rows(state_dict), strict, assign)

    def __deepcopy__(self, memo: dict[int, object]) -> SASRec:
        """Copies are eager (a compiled function is tied to the module it was compiled for)."""
        compiled, self._compiled = self._compiled, None
        try:
            clone = copy.copy(self)
            clone.__dict__ = copy.deepcopy(self.__dict__, memo)
        finally:
            self._compiled = compiled
        return clone

    def loss(
        self,
        seq: Tensor,
        targets: Tensor,
        types: Tensor | None = None,
        exclude: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        """Next-item cross-entropy at every position, by the config's loss (`model.losses`).
        ``targets`` (B, T) int64 next items, 0 = no target; ``exclude`` (N+1,) bool: items never scored
        (held out); ``log_q`` (N+1,) float32 log sampling probabilities, needed by the sampled loss."""
        c = self.config
        hide = None
        if self.training and c.id_dropout > 0:
            hide = torch.rand(c.n_items + 1, device=seq.device) < c.id_dropout  # (N+1,)
        table = self.item_table(None if c.text_loss else hide)  # (N+1, D)
        h = self.forward(seq, types, table)  # (B, T, D)
        keep = targets != 0  # (B, T)
        h, y = h[keep], targets[keep]  # (P, D), (P,)
        loss = self.criterion(h, y, table, exclude, log_q)
        if hide is not None and c.text_loss:
            # the same states against a table where the hidden items have their text alone
            loss = loss + c.text_loss * self.criterion(h, y, self.item_table(hide), exclude, log_q)
        return loss

    @torch.no_grad()
    def score_last(
        self,
        seq: Tensor,
        types: Tensor | None = None,
        table: Tensor | None = None,
    ) -> Tensor:
        """(B, N) float32 scores of every catalog item (padding column dropped) after each sequence."""
        table = self.item_table() if table is None else table
        h = self.forward(seq, types, table, last=True)[:, -1]  # (B, D)
        return h @ table[1:].T


@functools.lru_cache(maxsize=256)
def packing(length: int, drops: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor, int]:
    """How `SASRec.newest_without` packs a sequence of ``length`` and its variants into one:
    (N,) int64 index into the sequence of each packed row, (N,) int64 its position (0 = the newest
    of its own sequence), (1, 1, N, N) bool attention mask (True = may attend) and how many rows are
    read out; those come last: the prefix's newest, then each variant's newest, in ``drops`` order.
    Cached (the same few shapes come back on every request); read-only."""
    prefix, d = length - 1, np.asarray(drops, dtype=np.int64)  # the prefix: all but the newest item
    src = np.concatenate([np.arange(prefix), *[np.arange(length - k, length) for k in drops]])  # (N,)
    group = np.r_[np.zeros(prefix, np.int64), np.repeat(np.arange(1, len(d) + 1), d)]  # 0 = prefix
    newest = np.r_[prefix - 1, np.full(len(d), length - 1)]  # sequence index of each group's newest
    pos = newest[group] - src
    keep = np.r_[0, length - 1 - d][group]  # (N,) prefix items a variant's rows see: those older
    causal = (group[:, None] == group[None, :]) & (src[None, :] <= src[:, None])
    mask = causal | ((group[None, :] == 0) & (src[None, :] < keep[:, None]))  # (N, N)
    ends = np.r_[prefix - 1, prefix + np.cumsum(d) - 1]  # each group's newest row
    order = np.r_[np.setdiff1d(np.arange(len(src)), ends), ends]  # rows read out go last
    mask = np.ascontiguousarray(mask[order][:, order][None, None])
    return torch.from_numpy(src[order]), torch.from_numpy(pos[order]), torch.from_numpy(mask), len(ends)


def with_star_rows(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` with an older event-type table brought up to date. Older code had no star rows and
    embedded every rating with the rating type's row; each new star row starts as that row, so an
    old model scores exactly as it did. Anything else is returned as it is (a bad shape still fails
    loudly in `load_state_dict`)."""
    w = state.get("type_emb.weight")
    if w is None or w.shape[0] != N_EVENT_TYPES + 1 - RATING_STARS:
        return state
    rating = w[EVENT_TYPE_IDS[EventType.rating]]  # (D,)
    return {**state, "type_emb.weight": torch.cat([w, rating.expand(RATING_STARS, -1)])}
