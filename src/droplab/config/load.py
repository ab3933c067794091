"""YAML -> frozen, typed config: defaults, experiment file, dotted overrides, validation.

Precedence (lowest first): ``conf/default.yaml``, the experiment file, CLI ``key=value``
arguments, trial parameters. Everything is validated once, up front, so a bad key costs the
user one line and writes nothing. This package never imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from droplab.config.identity import to_dict
from droplab.config.schema import FREE_MAPS, Config, ConfigError
from droplab.config.validate import validate

DEFAULT_FILE = "default.yaml"


def default_yaml_path() -> Path:
    """``conf/default.yaml``: inside the installed package, or at the repository root."""
    package = Path(__file__).parents[1]  # src/droplab (or site-packages/droplab)
    packaged = package / "conf" / DEFAULT_FILE
    return packaged if packaged.exists() else package.parents[1] / "conf" / DEFAULT_FILE


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader (a config can never name code to import)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"malformed YAML in {p}{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p} must hold a mapping of keys, got {type(loaded).__name__}")
    return loaded


def parse_override(arg: str) -> tuple[str, Any]:
    """``"model.dropout=0.3"`` -> ``("model.dropout", 0.3)``; the value is read as YAML."""
    key, sep, raw = arg.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {arg!r} is not key=value (e.g. model.dropout=0.3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {key}: value {raw!r} is not valid YAML") from None
    return key.strip(), value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key = "a.b"``, creating sections as needed."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def merge(base: dict[str, Any], extra: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base``; free-form maps are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict) and dotted not in FREE_MAPS:
            out[key] = merge(out[key], value, f"{dotted}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(
    experiment: str | Path | None = None,
    overrides: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Config:
    """Defaults <- experiment file <- CLI overrides <- ``extra`` (trial params), validated.

    Raises:
        ConfigError: on the first unknown key, wrong type or out-of-range value.
    """
    tree = read_yaml(default_yaml_path())
    if experiment is not None:
        tree = merge(tree, read_yaml(experiment))
    dotted: dict[str, Any] = dict(parse_override(a) for a in overrides or [])
    dotted.update(extra or {})
    for key, value in dotted.items():
        patch: dict[str, Any] = {}
        set_dotted(patch, key, value)
        tree = merge(tree, patch)
    return from_dict(tree)


def from_dict(tree: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a nested mapping."""
    cfg = _build(Config, tree, "")
    probes = validate(cfg)
    if probes:
        bare = _without_free_maps(cfg)
        for where, overrides in probes:
            try:
                with_overrides(bare, overrides)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    return cfg


def _without_free_maps(cfg: Config) -> Config:
    """``cfg`` without its search space, grid and arms: their values are checked one by one."""
    return dataclasses.replace(
        cfg,
        study=dataclasses.replace(cfg.study, space={}),
        compare=dataclasses.replace(cfg.compare, grid={}, arms={}, baseline={}),
    )


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted ``overrides`` applied and validated (trial params, seeds)."""
    tree = to_dict(cfg)
    for key, value in overrides.items():
        patch: dict[str, Any] = {}
        set_dotted(patch, key, value)
        tree = merge(tree, patch)
    return from_dict(tree)


def _build(cls: Any, tree: Any, prefix: str) -> Any:
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {tree!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - names)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; allowed under {prefix.rstrip('.') or 'top level'}"
            f": {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name in names & set(tree):
        hint, value = hints[name], tree[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint``; lists become tuples (frozen)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        raise _type_error(key, value, hint)
    if hint is type(None):
        if value is None:
            return None
        raise _type_error(key, value, hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _type_error(key, value, hint)
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(key, value, hint)
        return _numbers(dict(value))
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(key, value, hint)
        return list(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    if hint is int and isinstance(value, bool):
        raise _type_error(key, value, hint)
    if isinstance(value, hint):
        return value
    raise _type_error(key, value, hint)


def _numbers(value: Any) -> Any:
    """Inside free-form maps (search space, grid), read ``1e-3`` as the number it means."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_error(key: str, value: Any, hint: Any) -> ConfigError:
    wanted = str(hint).replace("typing.", "").replace("NoneType", "null")
    wanted = wanted.replace("<class '", "").replace("'>", "")
    return ConfigError(f"{key}={value!r} has the wrong type; allowed: {wanted}")
