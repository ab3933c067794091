"""The ground of the config package: its error, the frozen base model, shared value types."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A config problem; ``str(error)`` is one line: the key, the value, what is allowed."""


class Frozen(BaseModel):
    """A frozen, strict model: unknown keys are refused and no value is coerced (``true`` is no
    integer, ``"3"`` no number), except that an int is taken where a float is expected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def numbers(value: Any) -> Any:
    """``value`` with strings like ``1e-3``, also inside lists and maps, read as floats."""
    # YAML 1.1 reads 1e-3 (no dot) as a string; nobody who writes it means a string
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


T = TypeVar("T")
# 1e-3 becomes a number, and an int a float: 0 -> 0.0, which the config hash sees
Float = Annotated[float, BeforeValidator(numbers)]
# a YAML list, frozen as a tuple (nothing else becomes one: a YAML !!set has no order)
Seq = Annotated[tuple[T, ...], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)]
# a map of dotted config keys (study.space, compare.grid), whose values the loader checks
FreeMap = Annotated[dict[str, T], BeforeValidator(numbers)]


def refuse(key: str, value: Any, allowed: str) -> PydanticCustomError:
    """The error a validator raises for a broken rule; ``key`` is relative to the model (empty:
    the field itself; ``a+b``: two fields together); the loader prefixes it."""
    return PydanticCustomError(
        "config_rule", "{allowed}", {"key": key, "value": value, "allowed": allowed}
    )
