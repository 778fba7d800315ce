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

import numpy as np

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
