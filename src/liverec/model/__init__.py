"""Scorers behind the `Model` contract (`model.base`): popularity + co-occurrence
(`model.popularity`) and the Transformer (`model.transformer`, served by `model.sequential`)."""
