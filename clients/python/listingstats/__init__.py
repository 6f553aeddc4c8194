"""Python client for the listingstats Redis module (one node or Redis
Cluster). See README.md, "Running on Redis Cluster"."""

from .client import ListingStats
from .merge import Row, TopRow

__all__ = ["ListingStats", "Row", "TopRow"]
