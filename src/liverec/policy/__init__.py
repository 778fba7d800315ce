"""Exploration policies: choose what to show from model scores, logging propensities."""

from liverec.policy.base import Feedback, Greedy, Policy, Slate

__all__ = ["Feedback", "Greedy", "Policy", "Slate"]
