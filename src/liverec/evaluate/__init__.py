"""Honest evaluation: leave-one-out by time with full ranking, baselines, and (later) prequential
and off-policy evaluation. Hyperparameters are chosen on the validation target, never on test."""
