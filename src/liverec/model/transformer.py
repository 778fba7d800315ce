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
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liverec.core.features import EVENT_TYPE_IDS, N_EVENT_TYPES, N_TIME_GAP_BUCKETS, RATING_STARS
from liverec.core.schema import EventType
from liverec.model.softmax import full_softmax_xent, masked_logits


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


class SwiGLU(nn.Module):
    """Gated feed-forward: W3 (silu(W1 x) * W2 x)."""

    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, hidden, bias=False)
        self.w2 = nn.Linear(d_model, hidden, bias=False)
        self.w3 = nn.Linear(hidden, d_model, bias=False)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.w3(F.silu(self.w1(x)) * self.w2(x)))


class GatedBlock(nn.Module):
    """Pre-LayerNorm block whose residual branches are scaled by sigmoid gates computed from the
    residual stream, with a SwiGLU feed-forward (the LiGR layer that eSASRec builds on)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.gate1 = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = SwiGLU(d_model, 4 * d_model, dropout)
        self.gate2 = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor | None, queries: int = 0) -> Tensor:
        a = self.attn(self.ln1(x), mask, queries)
        x = x[:, -queries:] if queries else x
        x = x + torch.sigmoid(self.gate1(x)) * a
        return x + torch.sigmoid(self.gate2(x)) * self.mlp(self.ln2(x))


BLOCKS: dict[str, type[Block] | type[GatedBlock]] = {"prenorm": Block, "gated": GatedBlock}


@dataclass
class TransformerConfig:
    n_items: int  # catalog size (without the padding row); grows with `SASRec.grow`
    text_dim: int = 384  # width of the text embeddings (all-MiniLM-L6-v2: 384); 0 = no text
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 200
    dropout: float = 0.2
    # share of items whose id embedding is swapped for a learned unknown-item embedding each step: the
    # model learns to score an item by its text alone, and untrained (new) items start from that vector
    id_dropout: float = 0.0
    # > 0: hidden ids leave the main loss alone and feed a second one, weighted by this, where the
    # `id_dropout` share of items is scored by text alone: new items are learned without the known
    # items giving up their ids in the main loss
    text_loss: float = 0.0
    input_dropout: float = 0.0  # share of a training sequence's items removed from its input (and targets)
    label_smoothing: float = 0.0  # share of each target's probability spread over the other candidates
    exclude_seen: bool = False  # train each position's softmax without the items already in its prefix
    event_types: bool = False  # add an embedding of each interaction's event type (click, purchase, ...)
    time_gaps: bool = False  # add an embedding of the time since the previous interaction
    future: int = 1  # train each position on the next `future` items (1 = next-item prediction)
    future_decay: float = 0.5  # weight of the k-th next item: future_decay ** (k - 1)
    block: str = "prenorm"  # "prenorm": standard pre-LN block; "gated": LiGR-style gated residuals + SwiGLU
    loss: str = "full"  # "full": softmax over the catalog; "sampled": shared negatives with logQ correction
    n_negatives: int = 1024  # sampled loss only

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


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
        self.gap_emb = nn.Embedding(N_TIME_GAP_BUCKETS, c.d_model) if c.time_gaps else None
        self.drop = Dropout(c.dropout)
        if c.text_loss and not (c.id_dropout and c.text_dim):
            raise ValueError("text_loss needs id_dropout > 0 and text_dim > 0 (its items are scored by text)")
        if c.block not in BLOCKS:
            raise ValueError(f"unknown block {c.block!r}; choose one of {', '.join(BLOCKS)}")
        block = BLOCKS[c.block]
        self.blocks = nn.ModuleList([block(c.d_model, c.n_heads, c.dropout) for _ in range(c.n_layers)])
        self.ln_f = nn.LayerNorm(c.d_model)
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
        gaps: Tensor | None = None,
        table: Tensor | None = None,
        last: bool = False,
    ) -> Tensor:
        """Hidden states (B, T, D) float32 for left-padded item indices ``seq`` (B, T) int64
        (0 = padding); ``types`` (B, T) int64 event-type ids, ``gaps`` (B, T) int64 time-gap buckets
        (see `core.features`), left-padded like ``seq``; ignored unless the config enables them.
        ``last``: only the newest position's state, (B, 1, D) (what serving and online steps need;
        the last block then skips the other positions' queries and MLP)."""
        T = seq.shape[1]
        if self.config.max_len < T:
            seq, T = seq[:, -self.config.max_len :], self.config.max_len
            types = types[:, -T:] if types is not None else None
            gaps = gaps[:, -T:] if gaps is not None else None
        table = self.item_table() if table is None else table
        x = table[seq] * math.sqrt(self.config.d_model)  # (B, T, D)
        positions = torch.arange(T - 1, -1, -1, device=seq.device)  # 0 = the newest interaction
        x = x + self.pos_emb(positions)
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
        if self.gap_emb is not None and gaps is not None:
            x = x + self.gap_emb(gaps.clamp(0, N_TIME_GAP_BUCKETS - 1))
        real = seq != 0  # (B, T)
        if bool(real.all()):  # e.g. one user's live sequence: no mask to build
            return (self._compiled or self.encode)(self.drop(x), None, last)
        x = self.drop(x) * real.unsqueeze(-1)
        return (self._compiled or self.encode)(x, real, last)

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
        gaps: Tensor | None = None,
        exclude: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        """Next-item cross-entropy at every position. ``targets`` (B, T) int64 next items, or
        (B, T, K) the next K items (see `TransformerConfig.future`), 0 = no target; ``exclude``
        (N+1,) bool: items never scored (held out); ``log_q`` (N+1,) float32 log sampling
        probabilities, needed by the sampled loss."""
        c = self.config
        if targets.dim() == 2:
            targets = targets.unsqueeze(-1)  # (B, T, 1)
        if self.training and c.input_dropout > 0:
            # a removed item is a hole in the context (attention skips it), and its position has no
            # hidden state worth a target: both go, the later positions keep theirs
            drop = (torch.rand(seq.shape, device=seq.device) < c.input_dropout) & (seq != 0)  # (B, T)
            seq = seq.masked_fill(drop, 0)
            targets = targets.masked_fill(drop.unsqueeze(-1), 0)
        hide = None
        if self.training and c.id_dropout > 0:
            hide = torch.rand(c.n_items + 1, device=seq.device) < c.id_dropout
        table = self.item_table(None if c.text_loss else hide)  # (N+1, D)
        h = self.forward(seq, types, gaps, table)  # (B, T, D)
        keep = targets[..., 0] != 0
        h, y = h[keep], targets[keep]  # (P, D), (P, K)
        if c.loss == "sampled":
            xent = partial(self._sampled_loss, h, y[:, 0], exclude=exclude, log_q=log_q)
        else:
            blocked = torch.zeros(len(table), dtype=torch.bool, device=h.device)  # (N+1,)
            blocked[0] = True  # the padding row is never a candidate
            if exclude is not None:
                blocked |= exclude
            # serving never ranks seen items, so with exclude_seen training need not push them down
            seen = self._seen(seq, keep, y) if c.exclude_seen else None  # (P, T)
            xent = partial(self._xent, h, y, blocked=blocked, seen=seen)
        loss = xent(table)
        if hide is not None and c.text_loss:
            # the same states against a table where the hidden items have their text alone
            loss = loss + c.text_loss * xent(self.item_table(hide))
        return loss

    def _xent(self, h: Tensor, y: Tensor, table: Tensor, *, blocked: Tensor, seen: Tensor | None) -> Tensor:
        """Mean weighted cross-entropy of states ``h`` (P, D) against ``table`` (N+1, D) for targets
        ``y`` (P, K) int64 (0 = none); ``blocked`` (N+1,) bool never scored, ``seen`` (P, T) masked."""
        c = self.config
        if y.shape[1] == 1 and not c.label_smoothing:  # next-item prediction, in blocks when it is large
            return full_softmax_xent(h, table, y[:, 0], blocked, seen)
        logits = masked_logits(h, table, blocked, seen)  # (P, N+1) in model indices
        logp = F.log_softmax(logits, dim=1)
        if c.label_smoothing:  # over the candidates only (excluded and seen items have -inf, no share)
            finite = torch.isfinite(logits)
            smooth = -(logp.where(finite, 0.0).sum(1, keepdim=True) / finite.sum(1, keepdim=True))  # (P, 1)
            logp = (1 - c.label_smoothing) * logp - c.label_smoothing * smooth
        # the next item weighs 1, the k-th next future_decay^(k-1); absent (0) targets weigh 0
        weights = c.future_decay ** torch.arange(y.shape[1], dtype=logp.dtype) * (y != 0)
        nll = torch.where(y != 0, -logp.gather(1, y), 0.0) * weights  # (P, K)
        return nll.sum() / weights.sum()

    @staticmethod
    def _seen(seq: Tensor, keep: Tensor, y: Tensor) -> Tensor:
        """(P, T) int64 model indices of the items each kept position has already seen (its own item
        and those before it), 0 elsewhere, never one of its targets: the columns to mask.
        ``seq`` (B, T) int64, ``keep`` (B, T) bool, ``y`` (P, K) int64 targets."""
        T = seq.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()  # (T, T): key s <= query t
        prefix = seq.unsqueeze(1).expand(-1, T, -1).masked_fill(~causal, 0)[keep]  # (P, T)
        is_target = (prefix.unsqueeze(-1) == y.unsqueeze(1)).any(-1)  # (P, T): repeats stay candidates
        return prefix.masked_fill(is_target, 0)

    def _sampled_loss(
        self, h: Tensor, y: Tensor, table: Tensor, *, exclude: Tensor | None, log_q: Tensor | None
    ) -> Tensor:
        """Softmax over the positive and `n_negatives` items shared by the batch, drawn from Q, with
        logQ correction (Yi et al., 2019) so the estimate is unbiased for the full softmax."""
        if log_q is None:
            raise ValueError("the sampled loss needs log_q, the log sampling probability of each item")
        q = log_q.exp()
        if exclude is not None:
            q = q.masked_fill(exclude, 0.0)
        q[0] = 0.0
        neg = torch.multinomial(q, self.config.n_negatives, replacement=True)  # (K,)
        pos_logit = (h * table[y]).sum(-1, keepdim=True) - log_q[y].unsqueeze(1)  # (P, 1)
        neg_logit = h @ table[neg].T - log_q[neg].unsqueeze(0)  # (P, K)
        neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == y.unsqueeze(1), -torch.inf)  # accidental hits
        logits = torch.cat([pos_logit, neg_logit], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=h.device))

    @torch.no_grad()
    def score_last(
        self,
        seq: Tensor,
        types: Tensor | None = None,
        gaps: Tensor | None = None,
        table: Tensor | None = None,
    ) -> Tensor:
        """(B, N) float32 scores of every catalog item (padding column dropped) after each sequence."""
        table = self.item_table() if table is None else table
        h = self.forward(seq, types, gaps, table, last=True)[:, -1]  # (B, D)
        return h @ table[1:].T


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
