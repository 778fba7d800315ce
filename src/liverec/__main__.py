"""`python -m liverec ...` runs the CLI (used to start helper processes with the same interpreter)."""

from liverec.cli import app

app()
