"""One module per resource: events, users, items, health."""
