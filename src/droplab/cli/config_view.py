"""``droplab config``: the resolved config as YAML, or only what differs from the defaults.

Imports nothing but the config package, so it answers in a fraction of a second.
"""

from __future__ import annotations

from typing import Any

import yaml

from droplab.config.identity import public_dict
from droplab.config.schema import FREE_MAPS, Config


def config_yaml(cfg: Config, defaults: Config | None = None) -> str:
    """``cfg`` as YAML, secrets masked: an experiment file that gives the same config back.
    With ``defaults``, only the keys whose values differ from them (nested as in the file)."""
    tree = public_dict(cfg)
    if defaults is not None:
        tree = _changed(tree, public_dict(defaults))
    if not tree:
        return "# no key differs from conf/default.yaml\n"
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def _changed(tree: dict[str, Any], base: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The parts of ``tree`` that differ from ``base``; free-form maps count as one value."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        other = base.get(key)
        if isinstance(value, dict) and isinstance(other, dict) and prefix + key not in FREE_MAPS:
            sub = _changed(value, other, f"{prefix}{key}.")
            if sub:
                out[key] = sub
        elif value != other:
            out[key] = value
    return out
