"""Bayesian linear regression of rewards on phi = user_vector * item_vector, shared by LinUCB and
Thompson sampling.

The model is ``reward ~ phi . theta + noise`` with the prior ``theta ~ N(1, sigma^2 / lam I)``. The
prior mean of ones makes the prior prediction ``phi . 1 = user_vector . item_vector``, the model's
own score, so a fresh policy ranks exactly like the model and only departs from it as rewards
disagree. The precision ``A = lam I + sum phi phi^T`` is kept with its inverse, updated by
Sherman-Morrison (O(D^2) per reward); ``A^-1`` is recomputed from ``A`` every `REFRESH` updates so
rounding does not accumulate. D is set by the first vectors seen; vectors of another width (a new
model) start a fresh prior.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from scipy.linalg import solve_triangular

from liverec.policy.base import Feedback

REFRESH = 1000  # updates between exact re-inversions of A (amortised O(D^3 / REFRESH))


class BayesLinear:
    def __init__(self, lam: float) -> None:
        if not lam > 0:
            raise ValueError(f"lam (prior precision) must be > 0, got {lam}")
        self.lam = float(lam)
        self.dim = 0
        self.n_updates = 0
        self.A: np.ndarray = np.zeros((0, 0))  # (D, D) float64 precision (in units of 1 / sigma^2)
        self.A_inv: np.ndarray = np.zeros((0, 0))  # (D, D) float64
        self.b: np.ndarray = np.zeros(0)  # (D,) float64 = lam * 1 + sum r phi
        self._mu: np.ndarray | None = np.zeros(0)  # (D,) float64 posterior mean A^-1 b, lazily
        self._chol: np.ndarray | None = None  # (D, D) cached Cholesky factor of A^-1

    def reset(self, dim: int) -> None:
        """Back to the prior in ``dim`` dimensions."""
        self.dim = dim
        self.n_updates = 0
        self.A = self.lam * np.eye(dim)
        self.A_inv = np.eye(dim) / self.lam
        self.b = self.lam * np.ones(dim)
        self._mu = np.ones(dim)
        self._chol = None

    def ensure(self, dim: int) -> None:
        if dim != self.dim:
            self.reset(dim)

    def update(self, phi: np.ndarray, reward: float) -> None:
        """Add one observation: ``phi`` (D,) float64, ``reward`` a finite float. O(D^2)."""
        self.ensure(phi.shape[0])
        a_phi = self.A_inv @ phi
        # New arrays rather than in-place edits: a select() running meanwhile on another thread
        # keeps reading one consistent snapshot.
        self.A = self.A + np.multiply.outer(phi, phi)
        self.b = self.b + reward * phi
        self.n_updates += 1
        if self.n_updates % REFRESH == 0:
            self.A_inv = np.linalg.inv(self.A)
        else:
            self.A_inv = self.A_inv - np.multiply.outer(a_phi, a_phi / (1.0 + phi @ a_phi))
        self._mu = None
        self._chol = None

    @property
    def mu(self) -> np.ndarray:
        """(D,) float64 posterior mean A^-1 b (recomputed once after a batch of updates)."""
        mu = self._mu
        if mu is None:
            mu = self._mu = self.A_inv @ self.b
        return mu

    def mean(self, phi: np.ndarray) -> np.ndarray:
        """(M,) posterior mean reward of features ``phi`` (M, D)."""
        self.ensure(phi.shape[1])
        return phi @ self.mu

    def width(self, phi: np.ndarray) -> np.ndarray:
        """(M,) sqrt(phi A^-1 phi^T) per row of ``phi`` (M, D): the posterior sd in units of sigma."""
        self.ensure(phi.shape[1])
        return np.sqrt(np.maximum(np.einsum("md,md->m", phi @ self.A_inv, phi), 0.0))

    def sample(self, n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """(n, D) float64 draws of theta ~ N(mu, sigma^2 A^-1)."""
        mu, chol = self.mu, self._chol
        if chol is None:
            a_inv = self.A_inv
            try:
                chol = np.linalg.cholesky((a_inv + a_inv.T) / 2.0)
            except np.linalg.LinAlgError:  # rounding made it indefinite: re-invert exactly
                a_inv = self.A_inv = np.linalg.inv(self.A)
                chol = np.linalg.cholesky((a_inv + a_inv.T) / 2.0)
            self._chol = chol
        z = rng.standard_normal((n, mu.shape[0]))
        return mu[None, :] + sigma * (z @ chol.T)


class Window:
    """One user's last ``size`` observations (unit item vector x, centred reward y) in a ring of
    preallocated arrays, so a posterior rebuild reads one (n, D) block instead of stacking vectors.
    A vector of another width (a new model's space) starts the window over."""

    def __init__(self, size: int, dim: int) -> None:
        self.y = np.zeros(size)  # (W,) float64
        self.reset(dim)

    def reset(self, dim: int) -> None:
        """Empty, for vectors of width ``dim``."""
        self.x = np.zeros((self.y.shape[0], dim))  # (W, D) float64
        self.count = 0  # observations held, at most W
        self.next = 0  # slot the next observation overwrites

    def __len__(self) -> int:
        return self.count

    def append(self, x: np.ndarray, y: float) -> None:
        if x.shape[0] != self.x.shape[1]:
            self.reset(x.shape[0])
        self.x[self.next], self.y[self.next] = x, y
        self.next = (self.next + 1) % self.y.shape[0]
        self.count = min(self.count + 1, self.y.shape[0])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, D) vectors and (n,) rewards held (in slot order: the posterior ignores order)."""
        return self.x[: self.count], self.y[: self.count]


class UserPosterior:
    """Per-user Bayesian linear regression of position-centred rewards on unit item vectors, over
    each user's last ``window`` shown items.

    Why per user: a shared theta learns which directions of the model's space pay off for everyone,
    but a user whose taste moved is only found by exploring *that user's* unknown directions, and
    only that user's non-clicks say the model's top items stopped working for them. Rewards are
    centred by the mean reward of their position (examination falls with rank), so y > 0 means "did
    better than a typical item shown there". Model: ``y ~ x . theta_u + noise``, prior
    ``theta_u ~ N(0, sigma^2 / lam I)``, x = item vector / its norm. Old evidence drops out of the
    window, which is how the posterior follows drift; up to ``max_users`` users are kept (least
    recently updated forgotten first). The observations keep the vectors they were served with, so a
    new model version does not invalidate them at once (the window renews them).
    """

    def __init__(
        self,
        lam: float,
        window: int,
        weight: float = 1.0,
        max_users: int = 100_000,
        position_rate: float = 1e-3,
    ) -> None:
        if weight < 0:
            raise ValueError(f"user_weight must be >= 0, got {weight}")
        if not lam > 0:
            raise ValueError(f"user_lam (prior precision) must be > 0, got {lam}")
        if window < 1 or max_users < 1:
            raise ValueError("user_window and max_users must be >= 1")
        self.weight = float(weight)  # the policies' user_weight: score units per unit of reward (0 = off)
        self.lam = float(lam)
        self.window = int(window)
        self.max_users = int(max_users)
        self.position_rate = float(position_rate)
        self.users: OrderedDict[str, Window] = OrderedDict()
        self.position_mean: dict[int, float] = {}  # running mean reward per position
        # user -> (mean, precision, L^-T with L L^T = precision), until their next observation
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def forget(self, user_id: str) -> None:
        """Drop one user's window and cached posterior: a deleted user starts fresh."""
        self.users.pop(user_id, None)
        self._cache.pop(user_id, None)

    def observe(self, user_id: str, item_vector: np.ndarray, position: int, reward: float) -> None:
        """Add one shown item's reward to ``user_id``'s window (``item_vector`` (D,))."""
        norm = float(np.linalg.norm(item_vector))
        if norm == 0.0 or not np.isfinite(norm):
            return
        base = self.position_mean.get(position, reward)
        self.position_mean[position] = base + self.position_rate * (reward - base)
        obs = self.users.get(user_id)
        if obs is None:
            obs = self.users[user_id] = Window(self.window, item_vector.shape[0])
            if len(self.users) > self.max_users:
                self._cache.pop(self.users.popitem(last=False)[0], None)
        else:
            self.users.move_to_end(user_id)
        obs.append(np.asarray(item_vector, dtype=np.float64) / norm, reward - base)
        self._cache.pop(user_id, None)

    def posterior(self, user_id: str | None, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(D,) mean and (D, D) precision (units of 1 / sigma^2) of ``user_id``'s theta; the prior
        when the user has no observations in ``dim`` dimensions."""
        mu, precision, _ = self._posterior(user_id, dim)
        return mu, precision

    def _posterior(self, user_id: str | None, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`posterior` plus L^-T (L L^T = the precision's Cholesky factorisation; theta = mu +
        sigma L^-T z has covariance sigma^2 precision^-1), cached until the user's next observation."""
        key = user_id or ""
        cached = self._cache.get(key)
        if cached is not None and cached[0].shape[0] == dim:
            return cached
        window = self.users.get(key)
        if window is not None and window.x.shape[1] == dim:
            x, y = window.arrays()  # (n, D), (n,)
        else:
            x, y = np.zeros((0, dim)), np.zeros(0)  # the prior
        precision = self.lam * np.eye(dim) + x.T @ x
        inv_t = solve_triangular(np.linalg.cholesky(precision), np.eye(dim), lower=True).T  # L^-T
        out = (inv_t @ (inv_t.T @ (x.T @ y)), precision, inv_t)  # mean = precision^-1 x^T y
        if len(y):  # unknown users share the prior: nothing to keep per user
            self._cache[key] = out
        return out

    def sample(
        self, user_id: str | None, items: np.ndarray, n: int, sigma: float, rng: np.random.Generator
    ) -> np.ndarray:
        """(n, M) float32 draws of x . theta_u for the candidates' item vectors ``items`` (M, D)."""
        mu, _, inv_t = self._posterior(user_id, items.shape[1])
        z = rng.standard_normal((mu.shape[0], n))
        theta = (mu[:, None] + sigma * (inv_t @ z)).T.astype(np.float32)  # (n, D)
        return theta @ unit_rows(items).astype(np.float32).T  # (n, M)

    def ucb(self, user_id: str | None, items: np.ndarray, alpha: float) -> np.ndarray:
        """(M,) x . mu + alpha * sqrt(x precision^-1 x) for the candidates ``items`` (M, D)."""
        mu, precision = self.posterior(user_id, items.shape[1])
        x = unit_rows(items)
        width = np.sqrt(np.maximum(np.einsum("md,dm->m", x, np.linalg.solve(precision, x.T)), 0.0))
        return x @ mu + alpha * width


def unit_rows(items: np.ndarray) -> np.ndarray:
    """(M, D) rows of ``items`` scaled to unit norm (zero rows stay zero)."""
    norms = np.linalg.norm(items, axis=1, keepdims=True)
    return items / np.where(norms > 0, norms, 1.0)


def observe_user(posterior: UserPosterior, fb: Feedback, reward: float) -> None:
    """Feed one `Feedback` to ``posterior`` when it is on (weight > 0) and the feedback knows its
    user and item vector."""
    if posterior.weight == 0:
        return
    user_id = fb.context.get("user_id") if fb.context else None
    if user_id is not None and fb.item_vector is not None:
        posterior.observe(str(user_id), np.asarray(fb.item_vector, dtype=np.float64), fb.position, reward)
