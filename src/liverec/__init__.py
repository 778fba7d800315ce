"""liverec: a real-time recommendation engine whose models learn from every event."""


def __getattr__(name: str) -> str:
    # the installed package's version (pyproject.toml is its one source), read only when asked for
    if name == "__version__":
        from importlib.metadata import version

        return version("liverec")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
