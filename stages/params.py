"""One typed loader for params.yaml: each stage declares a dataclass, this module fills and checks it."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range; the message names it."""


def load_section(path: Path, section: str, schema: type[T]) -> T:
    """Read `section` of the YAML file at `path` into the dataclass `schema`, checking names, types and ranges."""
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    document = yaml.safe_load(path.read_text()) or {}
    if section not in document:
        raise ParamsError(f"{path}: missing section '{section}'")
    return build(schema, document[section], f"{section}")


def build(schema: type[T], values: Any, where: str) -> T:
    """Recursively turn a mapping into the dataclass `schema`; `where` is the dotted name used in errors."""
    if not isinstance(values, dict):
        raise ParamsError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for name, field in fields.items():
        if name not in values:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{where}.{name}: missing")
            continue
        kwargs[name] = _coerce(hints[name], values[name], f"{where}.{name}")
    instance = schema(**kwargs)
    for name, field in fields.items():
        bounds = field.metadata.get("range")
        if bounds is not None:
            _check_range(getattr(instance, name), bounds, f"{where}.{name}")
        choices = field.metadata.get("choices")
        if choices is not None and getattr(instance, name) not in choices:
            allowed = ", ".join(map(str, choices))
            raise ParamsError(f"{where}.{name}: {getattr(instance, name)!r} is not one of {allowed}")
    return instance


def param(default: Any = dataclasses.MISSING, *, range: tuple[float | None, float | None] | None = None,  # noqa: A002
          choices: tuple[Any, ...] | None = None) -> Any:
    """A dataclass field with an optional closed `range` (None = open end) and allowed `choices`."""
    metadata = {"range": range, "choices": choices}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _check_range(value: Any, bounds: tuple[float | None, float | None], where: str) -> None:
    low, high = bounds
    for item in value if isinstance(value, list) else [value]:
        if item is None:
            continue
        if (low is not None and item < low) or (high is not None and item > high):
            raise ParamsError(f"{where}: {item} is out of range [{low}, {high}]")


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ParamsError as error:
                errors.append(str(error))
        raise ParamsError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is Path:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ParamsError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


@dataclass
class DeviceParams:
    """Where the network runs: "cpu" (byte-identical artifacts), "cuda", "cuda:N", or "auto" (cuda when present)."""

    device: str = param("cpu")


@dataclass
class NetworkParams(DeviceParams):
    """Which network a training stage builds, and the size its inputs are resized to."""

    arch: str = param("small")
    arch_options: dict = param({"width": 32})
    pretrained: str | None = param(None)
    input_size: int = param(96, range=(32, 1024))


@dataclass
class GraphCutParams:
    """The graph-cut growth of the cues (spec section 2.3-2.4), shared by training and export."""

    knn_k: int = param(10, range=(2, None))
    threshold: float = param(0.7, range=(0.0, 1.0))
    seed_capacity: float = param(10.0, range=(0.0, None))


@dataclass
class DenseCRFParams:
    """Dense-CRF kernels; `scale` multiplies both sxy (1/12 for the training-time CRF on the output grid)."""

    gaussian_sxy: float = param(3.0, range=(0.0, None))
    gaussian_compat: float = param(3.0, range=(0.0, None))
    bilateral_sxy: float = param(80.0, range=(0.0, None))
    bilateral_srgb: float = param(13.0, range=(0.0, None))
    bilateral_compat: float = param(10.0, range=(0.0, None))
    iterations: int = param(10, range=(1, None))
    scale: float = param(1.0, range=(1e-3, 10.0))

    def kernels(self) -> dict[str, float]:
        """The keyword arguments of `dgcn.crf.dense_crf`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(DenseCRFParams)}
