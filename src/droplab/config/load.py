"""YAML -> frozen, typed config: defaults, experiment file, dotted overrides, validation.

Precedence (lowest first): ``conf/default.yaml``, the experiment file, CLI ``key=value``
arguments, trial parameters. Everything is validated once, up front, so a bad key costs the
user one line and writes nothing. This package never imports torch.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from droplab.config.base import ConfigError
from droplab.config.identity import to_dict
from droplab.config.params import KINDS
from droplab.config.schema import FREE_MAPS, Config

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
    return from_dict(_apply(tree, dotted))


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted ``overrides`` applied and validated (trial params, seeds)."""
    return from_dict(_apply(to_dict(cfg), overrides))


def _apply(tree: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    for key, value in dotted.items():
        patch: dict[str, Any] = {}
        set_dotted(patch, key, value)
        tree = merge(tree, patch)
    return tree


def from_dict(tree: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a nested mapping.

    Raises:
        ConfigError: on the first unknown key, wrong type or out-of-range value.
    """
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        raise _one_line(exc) from None
    # each value the space or the grid can produce must itself be a valid override of its key;
    # checked on a copy without them, one value at a time
    study, compare = (
        cfg.study.model_copy(update={"space": {}}),
        cfg.compare.model_copy(update={"grid": {}, "arms": {}, "baseline": {}}),
    )
    bare = cfg.model_copy(update={"study": study, "compare": compare})
    space = [(f"study.space.{k}", {k: v}) for k, p in cfg.study.space.items() for v in p.values()]
    grid = [
        (f"compare.grid.{k}", {k: v}) for k, values in cfg.compare.grid.items() for v in values
    ]
    arms = [(f"compare.arms.{name}", dict(arm)) for name, arm in cfg.compare.arms.items()]
    for where, overrides in space + grid + arms:  # an arm is checked as a whole
        try:
            with_overrides(bare, overrides)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return cfg


def _one_line(exc: ValidationError) -> ConfigError:
    """The first problem in ``exc``: ``model.dropout=1.5 is not allowed; allowed: 0 <=
    dropout < 1``, ``model.width='abc' has the wrong type; allowed: ...``, ``unknown key ...``."""
    errors = exc.errors()
    field = _walk(errors[0]["loc"]).field
    # a union reports one error per member: a broken rule says more than "not this type"
    error = next(
        (e for e in errors if _walk(e["loc"]).field == field and not _wrong_type(e["type"])),
        errors[0],
    )
    spot, kind, value = _walk(error["loc"]), error["type"], error.get("input")
    ctx, said = error.get("ctx", {}), error["msg"].removeprefix("Input should be ")
    if kind == "extra_forbidden":
        parent = _walk(error["loc"][:-1])
        names = ", ".join(sorted(parent.model.model_fields)) if parent.model else ""
        text = f"unknown key {spot.key}; allowed under {parent.key or 'top level'}: {names}"
    elif kind.startswith("union_tag"):
        allowed = ", ".join(KINDS)
        text = f"{spot.key}.type={ctx.get('tag')!r} is not allowed; allowed: one of {allowed}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = f"{spot.key or 'config'} must be a mapping, got {value!r}"
    elif kind == "missing":
        text = f"{spot.key} is missing; it is required"
    elif kind == "config_rule":  # raised by a validator of the schema, see base.refuse
        key = "+".join(_join(spot.field, k) for k in ctx["key"].split("+"))
        text = f"{key}={ctx['value']!r} is not allowed; allowed: {ctx['allowed']}"
    elif _wrong_type(kind):
        text = f"{spot.key}={value!r} has the wrong type; allowed: {said.replace('tuple', 'list')}"
    else:
        text = f"{spot.field}={value!r} is not allowed; allowed: {_rule(kind, spot) or said}"
    return ConfigError(" ".join(text.splitlines()))


def _wrong_type(kind: str) -> bool:
    return kind.endswith(("_type", "_parsing")) or kind == "int_from_float"


def _join(prefix: str, key: str) -> str:
    return ".".join(part for part in (prefix, key) if part)


class _Spot(NamedTuple):
    key: str  # dotted, with [i] for a list item
    hints: tuple[Any, ...]  # the annotation and metadata of the field at the key
    model: type[BaseModel] | None  # the model at the key, if any

    @property
    def field(self) -> str:  # the key without item indices
        return re.sub(r"\[\d+\]", "", self.key)


def _walk(loc: tuple[int | str, ...]) -> _Spot:
    """Follow an error's location through the config's models to the key it names."""
    model: type[BaseModel] | None = Config
    key, hints = "", ()
    state = ""  # "map": the next part is a key of a map; "tag": it may name a parameter kind
    for part in loc:
        if state == "map" or (model is not None and part not in model.model_fields):
            # a key of a map (study.space.model.dropout), or a key that no model has
            key, model, state = _join(key, str(part)), None, "tag" if state else ""
        elif state == "tag" and part in KINDS:
            model, state = KINDS[str(part)], ""
        elif isinstance(part, int):
            key += f"[{part}]"
        elif model is not None:
            info = model.model_fields[part]
            key, hints, hint = _join(key, part), (info.annotation, *info.metadata), info.annotation
            model = hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None
            state = "map" if get_origin(hint) is dict else ""
        # any other part names a member of a union ('constrained-float', ...), not a key
    return _Spot(key, hints, model)


def _parts(hints: tuple[Any, ...]) -> Iterator[Any]:
    """Each hint and what it is made of (through Annotated, unions, tuples, Field metadata)."""
    for hint in hints:
        yield hint
        yield from _parts(tuple(hint.metadata if isinstance(hint, FieldInfo) else get_args(hint)))


_OPS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _rule(kind: str, spot: _Spot) -> str | None:
    """The field's whole rule in words, where pydantic names only the half that broke."""
    if kind == "too_short":
        return "a non-empty list"
    parts = list(_parts(spot.hints))
    bounds = {k: getattr(p, k) for p in parts for k in _OPS if getattr(p, k, None) is not None}
    if not kind.startswith(("greater_than", "less_than")) or not bounds:
        return None
    low = next((k for k in ("ge", "gt") if k in bounds), None)
    high = next((k for k in ("le", "lt") if k in bounds), None)
    if low and high:  # 0 <= dropout < 1
        name = spot.field.rsplit(".", 1)[-1]
        return f"{bounds[low]} {_OPS[low].replace('>', '<')} {name} {_OPS[high]} {bounds[high]}"
    noun = "a number" if float in parts else "an integer"
    bound = low or high or ""
    return f"{noun} {_OPS[bound]} {bounds[bound]}"
