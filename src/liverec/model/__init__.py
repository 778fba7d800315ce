"""Scorers behind the `Model` contract: popularity + co-occurrence now, the Transformer next."""

from liverec.model.base import Model
from liverec.model.popularity import PopularityCooc

__all__ = ["Model", "PopularityCooc"]
