"""``python -m droplab.cli``: the same as the ``droplab`` console script."""

from droplab.cli.main import entry

entry()
