"""Embedded providers: models that PyPI packages ship, run on this machine, offline."""
