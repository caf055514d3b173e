"""MostPopular: ranks items by their number of training interactions (the floor every method must clear)."""

from genir.methods.pop.model import MostPopular, MostPopularConfig

__all__ = ["MostPopular", "MostPopularConfig"]
