"""Versioned model snapshots and which one is live (`registry.registry.ModelRegistry`)."""
