"""The kinds of a ``study.space`` parameter, told apart by ``type``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import numpy as np
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from droplab.config.base import ConfigError, Frozen, Seq, refuse

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

Role = Literal["scientific", "nuisance", "fixed"]


class _Param(Frozen):
    """One entry of ``study.space``. ``suggest(trial, key)`` draws its value from a trial,
    ``values()`` are the values the loader checks as overrides of the key, ``grid_values(key)``
    feed the grid sampler (``None``: not part of the grid) and ``baseline_values()`` are the
    dropout-0 controls' widths when the key is ``model.width``."""

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # only the keys that were written: the space dumps to the dict it was read from, so the
        # study's fingerprint and the logged params stay the same
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def baseline_values(self) -> list[Any]:
        return []


class _Range(_Param):
    type: Literal["float", "int"]
    low: int | float  # an int stays an int, as written: the space's JSON must not change
    high: int | float
    step: Annotated[int | float, Field(gt=0)] | None = None
    log: bool = False
    role: Role = "scientific"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.low > self.high:
            raise refuse("low", self.low, f"a value <= high={self.high}")
        if self.log and self.low <= 0:
            raise refuse("low", self.low, "a value > 0 when log: true")
        if self.log and self.step is not None:
            raise refuse("step", self.step, "no step when log: true")
        return self

    def values(self) -> list[Any]:
        return [self.low, self.high]

    def grid_values(self, key: str) -> list[Any] | None:
        if self.step is None:
            raise ConfigError(
                f"study.space.{key} has no step or choices; the grid sampler needs a finite grid"
            )
        cast = int if self.type == "int" else float
        values = np.arange(self.low, self.high + self.step / 2, self.step)
        return [cast(round(v, 10)) for v in values]


class FloatParam(_Range):
    """``{type: float, low, high, step?, log?}``: Optuna's ``suggest_float``."""

    type: Literal["float"]

    def suggest(self, trial: BaseTrial, key: str) -> float:
        return trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log)


class IntParam(_Range):
    """``{type: int, low, high, step?, log?}``: Optuna's ``suggest_int``; its baseline values
    are the low, geometric middle and high values."""

    type: Literal["int"]
    low: int
    high: int

    def suggest(self, trial: BaseTrial, key: str) -> int:
        step = int(self.step or 1)
        return trial.suggest_int(key, self.low, self.high, step=step, log=self.log)

    def baseline_values(self) -> list[Any]:
        return sorted({self.low, round((self.low * self.high) ** 0.5), self.high})


class CategoricalParam(_Param):
    """``{type: categorical, choices: [...]}``: Optuna's ``suggest_categorical``."""

    type: Literal["categorical"]
    choices: Annotated[Seq[Any], Field(min_length=1)]
    role: Role = "scientific"

    def suggest(self, trial: BaseTrial, key: str) -> Any:
        return trial.suggest_categorical(key, list(self.choices))

    def values(self) -> list[Any]:
        return list(self.choices)

    def grid_values(self, key: str) -> list[Any] | None:
        return list(self.choices)

    def baseline_values(self) -> list[Any]:
        return sorted(self.choices)


class FixedParam(_Param):
    """``{type: fixed, value: ...}``: the same value in every trial, never asked of Optuna."""

    type: Literal["fixed"]
    value: Any
    role: Role = "scientific"

    def suggest(self, trial: BaseTrial, key: str) -> Any:
        return self.value

    def values(self) -> list[Any]:
        return [self.value]

    def grid_values(self, key: str) -> list[Any] | None:
        return None


Param = Annotated[
    FloatParam | IntParam | CategoricalParam | FixedParam, Field(discriminator="type")
]

KINDS: dict[str, type[_Param]] = {
    "float": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
    "fixed": FixedParam,
}
