"""Exploration policies: choose what to show from model scores, logging propensities.

See `liverec.policy.base` for the contract (inputs, context keys, what each propensity means).
"""

from liverec.policy.base import Feedback, Greedy, Policy, Slate
from liverec.policy.epsilon import EpsilonGreedy
from liverec.policy.linucb import LinUCB
from liverec.policy.plackett_luce import PlackettLuce
from liverec.policy.registry import POLICIES, make_policy
from liverec.policy.rerank import MMR
from liverec.policy.shuffle import ShuffleTopK
from liverec.policy.thompson import ThompsonSampling

__all__ = [
    "MMR",
    "POLICIES",
    "EpsilonGreedy",
    "Feedback",
    "Greedy",
    "LinUCB",
    "PlackettLuce",
    "Policy",
    "ShuffleTopK",
    "Slate",
    "ThompsonSampling",
    "make_policy",
]
