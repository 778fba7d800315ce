"""liverec: a real-time recommendation engine whose models learn from every event."""

__version__ = "0.1.0"
