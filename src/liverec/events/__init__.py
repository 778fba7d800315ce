"""What users did: the event schema, rewards, and the live per-user state derived from events."""

from liverec.events.rewards import Rewards, is_positive, reward
from liverec.events.schema import Event, EventContext, EventType, Item, StoredEvent

__all__ = ["Event", "EventContext", "EventType", "Item", "Rewards", "StoredEvent", "is_positive", "reward"]
