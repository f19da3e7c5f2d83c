"""Typed stage params: params.yaml holds the shared defaults of every section, pipelines/<name>.yaml what differs.

A stage loads its section as the defaults section deep-merged with the config's section, validated by a pydantic schema.
Every problem is a one-line ParamsError naming the file that set the value and the dotted key. Here: the loader, the
schemas' base class and the field types several sections share; each section's schema is in stages/schemas/.
`python -m tools.params_schema` prints the JSON Schema of the whole params document (docs/params.schema.json).
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Hashable
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from dgcn.errors import InputError


class ParamsError(InputError):
    """A params file or value is wrong; the message is one line naming the file and the dotted key."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


class Section(BaseModel):
    """Base of every schema: unknown keys, NaN/inf and lax coercions (bool -> int, "1" -> 1) are errors."""

    # strict: YAML's `yes` or `"3"` must not silently become 1 or 3; strict floats still take ints, and OptionalPath
    # relaxes strictness so that paths can be written as strings.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


S = TypeVar("S", bound=Section)

OptionalPath = Annotated[Path, Strict(False)] | None
Probability = Annotated[float, Field(ge=0, le=1)]
Workers = Annotated[int, Field(ge=0, le=64, description="worker processes (0 = in-process)")]
InputSize = Annotated[int, Field(ge=32, le=1024, description="images resized to input_size x input_size")]
Scales = Annotated[list[Annotated[float, Field(ge=0.25, le=4)]], Field(min_length=1, description="test-time scales")]
Device = Annotated[str, Field(min_length=1, description="cpu (byte-identical artifacts), cuda, cuda:N, or auto")]
# YAML 1.1 reads a bare `off` as false: that is the "off" the file says.
Amp = Annotated[Literal["bf16", "fp16", "off"], BeforeValidator(lambda value: "off" if value is False else value),
                Field(description="mixed precision of the network on CUDA: autocast to bf16, or fp16 with gradient "
                                  "scaling; off: float32 (the only choice on the CPU)")]
# numpy's legacy np.random.seed, which seed_everything calls, takes 0 .. 2**32 - 1 (torch takes more)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Epochs = Annotated[int, Field(ge=1)]
BatchSize = Annotated[int, Field(ge=1)]


def inside_root(path: object) -> bool:
    """Whether `path` is a relative path that stays inside the folder it is relative to (no `..`)."""
    return isinstance(path, str | PurePath) and not PurePath(path).is_absolute() and ".." not in PurePath(path).parts


def check_range(values: list, name: str) -> list:
    """A [low, high] pair with low <= high."""
    if values[0] > values[1]:
        raise PydanticCustomError("range_order", f"{name} must be [low, high] with low <= high", {})
    return values


# The most values a params file may hold once its aliases are expanded: the committed params.yaml holds a few hundred;
# a "billion laughs" file (aliases of aliases: shared, not copied, by the loader) expands to billions in any walk.
MAX_VALUES = 100_000


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when built with it: 10x faster
    """PyYAML (YAML 1.1) reads `1e-4` as a string; DVC's YAML 1.2 reads it as a float, and so do we. A key written
    twice in one mapping is an error (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):  # an unhashable key is refused by PyYAML itself below
                if key in seen:
                    raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                            f"found duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

# The top-level keys of a params file: the sections (those of tools.params_schema.SECTIONS, which imports every
# schema and so may not be imported here; a test keeps the two equal) and, in params.yaml alone, DVC's template vars.
SECTIONS = ("synthesize", "prepare", "graph_cut", "dense_crf", "cues", "train_dgcn", "export", "crf", "retrain",
            "retrain_labels", "evaluate")
VARIABLES = ("datasets", "synthetic_datasets")


# Mappings replaced whole, not merged: a network's builder options belong to its arch, so a config that picks another
# arch must not inherit options (e.g. the DGCN head's aspp_rates) that its builder does not take.
REPLACED_MAPPINGS = frozenset({"arch_options"})


def merge(base: dict, override: dict) -> dict:
    """`base` with `override` on top: mappings merged key by key, recursively (except those under a key of
    REPLACED_MAPPINGS); any other value (lists too) replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in REPLACED_MAPPINGS:
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_params(section: str, schema: type[S], *, config: Path | None, defaults: Path = Path("params.yaml")) -> S:
    """Section `section` of `defaults` deep-merged with the same section of `config` (if any), checked by `schema`;
    the defaults' section alone is checked too (a bad default that this config overrides is still a bad default)."""
    values = _section(_read(defaults, (*SECTIONS, *VARIABLES)), section, defaults, hint="")
    overrides = {}
    if config is not None:
        overrides = _section(_read(config, SECTIONS), section, config,
                             hint=f" (write '{section}: {{}}' when nothing differs)")
    params = _validated(schema, section, values, overrides, defaults=defaults, config=config)
    if overrides:
        _validated(schema, section, values, {}, defaults=defaults, config=None)
    return params


def _validated(schema: type[S], section: str, values: dict, overrides: dict, *, defaults: Path,
               config: Path | None) -> S:
    """`values` merged with `overrides`, checked by `schema`; a ParamsError naming the file that set a bad value."""
    try:
        return schema.model_validate(merge(values, overrides))
    except ValidationError as error:
        first = error.errors()[0]
        raise ParamsError(_explain(first, section, schema, overrides, defaults=defaults, config=config)) from None


def _read(path: Path, known: tuple[str, ...]) -> dict:
    """The YAML mapping of sections in `path`, whose top-level keys must be among `known`."""
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        document = yaml.load(path.read_bytes(), Loader=_Loader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else f"{path}"
        raise ParamsError(f"{where}: malformed YAML: {error.problem or error.context}") from error
    except yaml.YAMLError as error:  # e.g. undecodable bytes: no line/column mark
        raise ParamsError(f"{path}: malformed YAML: {error}") from error
    if document is None:  # an empty file: every section is then reported missing
        return {}
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (got {type(document).__name__})")
    _check_values(document, path)
    unknown = [str(key) for key in document if key not in known]
    if unknown:  # a misspelt section would be ignored: its stage would run on the defaults
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        raise ParamsError(f"{path}: unknown section {unknown[0]!r}; {hint}")
    return document


def _check_values(document: dict, path: Path) -> None:
    """Every number of a params file is finite, in any section (a default that a config overrides, too), and the
    file holds at most MAX_VALUES values once its aliases are expanded (walked without expanding them)."""
    stack: list[tuple[str, Any]] = [(str(key), value) for key, value in reversed(document.items())]
    for count in itertools.count(1):
        if not stack:
            return
        if count > MAX_VALUES:
            raise ParamsError(f"{path}: more than {MAX_VALUES} values once its aliases are expanded; "
                              "refused (a YAML bomb?)")
        dotted, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamsError(f"{path}: {dotted}: must be a finite number (got {short(value)})")
        if isinstance(value, dict):
            stack.extend((f"{dotted}.{key}", item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{dotted}[{i}]", item) for i, item in reversed(list(enumerate(value))))


def _section(document: dict, name: str, path: Path, *, hint: str) -> dict:
    """Section `name` of a params document, which must be a mapping."""
    if name not in document:
        raise ParamsError(f"{path}: missing section '{name}'{hint}")
    values = document[name]
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: section '{name}' must be a mapping (got {values!r})")
    return values


def _explain(error: ErrorDetails, section: str, schema: type[Section], overrides: dict, *, defaults: Path,
             config: Path | None) -> str:
    """One line for a pydantic error: the file that set the value, the dotted key, the problem and the value."""
    loc = tuple(error["loc"])
    kind, text, value = error["type"], error["msg"], error.get("input")
    ctx = error.get("ctx") or {}
    known = None
    if kind == "nested":  # an arch option: the option's own error, one level below arch_options
        nested = ctx["nested"]
        loc += tuple(nested["loc"])
        kind, text, value, known = nested["type"], nested["msg"], nested.get("input"), ctx["known"]
    elif ctx.get("key") is not None:  # a group's validator blaming one of the group's keys
        loc += (ctx["key"],)
        value = value.get(ctx["key"]) if isinstance(value, dict) else getattr(value, ctx["key"], value)
    if kind == "missing":
        message = "missing"
    elif kind == "extra_forbidden":
        known = _field_names(schema, loc[:-1]) if known is None else known
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        message = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known) or 'none'}"
        message = f"unknown parameter; {message}"
    elif kind == "finite_number":
        message = f"must be a finite number (got {short(value)})"
    else:
        message = f"{text[:1].lower()}{text[1:]} (got {short(value)})"
        if kind == "literal_error" and isinstance(value, str):  # a misspelt choice: name the closest
            close = difflib.get_close_matches(value, re.findall(r"'([^']*)'", str(ctx.get("expected", ""))), n=1)
            message += f"; did you mean {close[0]!r}?" if close else ""
    source = config if config is not None and _sets(overrides, loc) else defaults
    dotted = section + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return f"{source}: {dotted}: {message}"


def short(value: Any, limit: int = 80) -> str:
    """repr of a value, cut to `limit` characters: the line must stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _sets(overrides: dict, loc: tuple) -> bool:
    """Whether the config's section sets the value at `loc`."""
    node: Any = overrides
    for part in loc:
        if not isinstance(node, dict):  # a list or scalar the config wrote replaced the default whole
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _field_names(schema: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model at `loc` of `schema`."""
    model: Any = schema
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        model = field.annotation if field is not None else None
    return list(getattr(model, "model_fields", {}))
