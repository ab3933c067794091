"""The data layer's refusal, importable without numpy, pandas or torch (the CLI catches it)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data. ``str(e)`` is one line naming the problem (the CLI maps it to exit 2)."""
