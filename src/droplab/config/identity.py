"""A config as plain data: nested dicts, flat dotted params, its hash, secrets masked."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel

from droplab.config.schema import FREE_MAPS, Config


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    """The config (or a section) as plain nested dicts and lists, YAML/JSON ready."""
    return dict(_plain(cfg.model_dump()))


def public_dict(cfg: Config) -> dict[str, Any]:
    """:func:`to_dict` with passwords in URLs masked: safe to log, print or store."""

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        return mask_secrets(value) if isinstance(value, str) else value

    return dict(mask(to_dict(cfg)))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"model.width": 256, ...}``; free-form maps become JSON strings."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in FREE_MAPS:
            out.update(flatten(value, f"{dotted}."))
        elif isinstance(value, dict | list):
            out[dotted] = json.dumps(value, sort_keys=True)
        else:
            out[dotted] = value
    return out


# Only these sections change what a training run computes; names, paths, tracking and the
# study/compare settings do not, so they stay out of an experiment's identity.
_IDENTITY_SECTIONS = ("seed", "data", "model", "train", "eval")


# Keys added after runs were logged (issue 14): at these values they are what older versions
# did, so they stay out of the hash and every config hashed before keeps its hash (a
# comparison or study then resumes the runs it already has).
_ADDED_AT_DEFAULT: dict[str, Any] = {
    "model.dropout_kind": "bernoulli",
    "model.dropout_schedule": "constant",
    "model.dropout_switch_epoch": None,
    "model.max_norm": None,
    "model.norm": "none",
    "model.dropout_rng": "torch",
    "train.label_smoothing": 0.0,
    "eval.mc_samples": 0,
}


_EXECUTION_KEYS = {
    "train.device",
    "train.threads",
    "train.eval_batch_size",
    "train.max_seconds",
    "train.predict",
}


# Keys added after the first hashed runs, with the value that reproduces those runs: at that
# value they stay out of the hash, so existing studies and comparisons keep their identity.
# (``train.monitor: auto`` resolves to val/auprc for every classification target.)
_LATER_KEYS: dict[str, Any] = {
    "data.task": "auto",
    "data.categorical": "auto",
    "data.max_categories": 50,
    "data.drop": "[]",
    "data.positive": None,
    "data.missing": "refuse",
    "train.loss": "mse",
    "train.tau": None,
    "train.precision": "32",
}


def config_hash(cfg: Config) -> str:
    """A short hash of what determines a run's numbers: asking twice for it runs once."""
    flat = flatten(to_dict(cfg))
    keep = {k: v for k, v in flat.items() if k.split(".")[0] in _IDENTITY_SECTIONS}
    for key in _EXECUTION_KEYS:
        keep.pop(key, None)
    for key, default in {**_ADDED_AT_DEFAULT, **_LATER_KEYS}.items():
        if key in keep and keep[key] == default:
            del keep[key]
    if keep.get("train.monitor") == "auto":  # what val/auprc was before auto existed
        keep["train.monitor"] = "val/auprc"
    blob = json.dumps(keep, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)([^@\s]+)(?=@)")


def mask_secrets(text: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return _PASSWORD.sub(r"\1***", text)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an error's message (its type when empty), secrets masked: what a
    one-line refusal quotes."""
    text = str(exc).strip()
    return mask_secrets(text.splitlines()[0] if text else type(exc).__name__)[:limit]
