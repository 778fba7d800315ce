"""Serving: the in-process `Engine`, the `Recommender`, and the HTTP API around them."""
