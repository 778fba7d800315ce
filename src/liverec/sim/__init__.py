"""A synthetic world to test liverec against: users with hidden tastes who react to what is served."""

from liverec.sim.world import GENRES, Response, SimEvent, SimItem, SimUser, World

__all__ = ["GENRES", "Response", "SimEvent", "SimItem", "SimUser", "World"]
