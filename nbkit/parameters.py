"""Declared notebook parameters: one pydantic model per notebook, checked in one call.

A notebook's first code cell (tagged ``parameters``) holds plain annotated assignments that
papermill can override. The next cell declares the same names once more, with their types,
bounds, choices and descriptions, as a subclass of :class:`NotebookParameters`, and checks
every value in one call::

    class Params(nbkit.NotebookParameters):
        height: int = Field(ge=4, le=256, description="image height",
                            json_schema_extra=nbkit.SMALL)

    params = Params.check(globals())

The default values stay in the ``parameters`` cell only (papermill reads them there); the
declaration gives no default, so a name missing from the notebook is an error, and
:meth:`NotebookParameters.sample` takes the defaults from the cell (``defaults=``).

A bad value stops the notebook at once with a :class:`ValueError` whose first line names the
parameter and says what was expected, e.g. ``parameter 'height' = -3: must be >= 4``.

Validation is strict: an int field refuses floats and booleans, a float field accepts ints,
a str field refuses numbers, unknown and missing names are refused. Lists may also be given as
their text (``-p ks "[1, 2, 4]"`` reaches the notebook as a string).

Random valid values
-------------------
:meth:`NotebookParameters.sample` draws a random valid set, for tests that run a notebook
with parameters nobody chose by hand. Each field is drawn by these rules:

* ``json_schema_extra={"sample": [v1, v2, ...]}``: one of the listed values;
* a ``Literal[...]`` field: one of its choices; a bool: True or False;
* an int: uniformly between its lower bound (``ge``) and its upper bound (``le``), or its
  default when it has no upper bound or when the field is marked
  ``json_schema_extra=SMALL``: sizes are drawn between their minimum and the notebook's
  default, which keeps the run time at most that of the defaults (roughly);
* a positive float (a tolerance, a rate): log-uniformly within a factor 10 of its default,
  inside its bounds (between its lower bound and its default when marked ``SMALL``);
* anything else (strings, lists): its default.

Cross-field conditions (``model_validator``) are honoured by drawing again, up to 200 times.
"""

from __future__ import annotations

import ast
import math
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "SMALL",
    "NotebookParameters",
    "parameter_error",
]

#: Field hint: draw this size between its minimum and its default (see the module notes).
SMALL: dict[str, Any] = {"sample": "small"}

_DEVICE_PATTERN = r"^\s*(cpu|auto|cuda(:\d+)?)\s*$"


def parameter_error(name: str, value: Any, requirement: str) -> ValueError:
    """Build the error of a bad parameter, in the collection's one format.

    Parameters
    ----------
    name : str
        Name of the parameter (``"kernel_pairs[0]"`` for an element of a list).
    value : object
        The value it was given.
    requirement : str
        What it must be, e.g. ``"must be >= 4"``.

    Returns
    -------
    ValueError
        With the message ``parameter 'name' = value: requirement``; raise it.

    Examples
    --------
    >>> str(parameter_error("height", -3, "must be >= 4"))
    "parameter 'height' = -3: must be >= 4"
    """
    return ValueError(f"parameter {name!r} = {value!r}: {requirement}")


def _location(loc: tuple[Any, ...]) -> str:
    """Turn pydantic's error location ``('ks', 2)`` into ``ks[2]``."""
    text = str(loc[0]) if loc else ""
    for part in loc[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _requirement(error: Mapping[str, Any]) -> str:
    """Say in a few words what one pydantic error expected."""
    kind, ctx = error["type"], error.get("ctx", {})
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "less_than_equal": ("<=", "le"),
        "greater_than": (">", "gt"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {ctx[key]}"
    given = type(error.get("input")).__name__
    plain = {
        "int_type": f"must be an integer (int), not {given}",
        "float_type": f"must be a real number (float), not {given}",
        "bool_type": f"must be True or False (bool), not {given}",
        "string_type": f"must be a string (str), not {given}",
        "list_type": f"must be a list, not {given}",
        "finite_number": "must be a finite number",
    }
    if kind in plain:
        return plain[kind]
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "string_pattern_mismatch":
        if ctx["pattern"] == _DEVICE_PATTERN:
            return "must be 'cpu', 'cuda', 'cuda:N' or 'auto'"
        return f"must match {ctx['pattern']}"
    if kind in ("too_short", "too_long"):
        return error["msg"].lower().replace("list should", "must")
    return error["msg"]


def _format_errors(exc: ValidationError, declared: list[str]) -> str:
    """One line per error, the first naming the first bad parameter."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if error["type"] == "missing":
            lines.append(f"parameter {_location(loc)!r} is missing")
        elif error["type"] == "extra_forbidden":
            lines.append(
                f"parameter {_location(loc)!r} is unknown (declared: {', '.join(declared)})"
            )
        elif not loc:  # a model validator: its message is already in the collection's format
            lines.append(error["msg"].removeprefix("Value error, "))
        else:
            lines.append(
                str(parameter_error(_location(loc), error.get("input"), _requirement(error)))
            )
    return "\n".join(lines)


def _is_namespace(values: Mapping[str, Any]) -> bool:
    """Tell a module or notebook namespace (``globals()``) from a plain mapping."""
    return "__builtins__" in values or "__name__" in values


def _parse_text(annotation: Any, value: Any) -> Any:
    """Turn the text of a list (as ``papermill -p`` passes it) into the list."""
    if not isinstance(value, str) or typing.get_origin(annotation) not in (list, tuple):
        return value
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return value  # validation then reports the string


class NotebookParameters(BaseModel):
    """Base class of a notebook's parameter declaration.

    It declares the four parameters every notebook has: ``seed``, ``device``, ``dtype`` and
    ``threads``. A notebook subclasses it and adds its own fields (``Field(default, ge=...,
    le=..., description=...)``, ``Literal[...]`` for choices); a subclass may redeclare a
    common field to change its default.

    Examples
    --------
    >>> from pydantic import Field
    >>> class Params(NotebookParameters):
    ...     height: int = Field(12, ge=4, description="image height")
    >>> Params.check({"height": -3, "seed": 0, "device": "cpu", "dtype": "float64",
    ...               "threads": 1})
    Traceback (most recent call last):
    ...
    ValueError: parameter 'height' = -3: must be >= 4
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    _max_draws: ClassVar[int] = 200

    seed: int = Field(0, ge=0, le=2**32 - 1, description="random seed")
    device: str = Field(
        "cpu",
        pattern=_DEVICE_PATTERN,
        json_schema_extra={"sample": ["cpu"]},
        description='"cpu", "cuda", "cuda:N" or "auto" (a GPU if there is one)',
    )
    dtype: Literal["float64", "float32"] = Field("float64", description="floating-point type")
    threads: int = Field(
        1,
        ge=0,
        le=256,
        json_schema_extra={"sample": [0, 1, 2]},
        description="torch CPU threads (0 keeps the current setting)",
    )

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> NotebookParameters:
        """Validate every parameter in one call.

        Parameters
        ----------
        values : mapping
            Either a notebook's namespace (``globals()``: the declared names are taken from
            it and the rest ignored) or a plain mapping of exactly the declared names.

        Returns
        -------
        NotebookParameters
            The validated values (an instance of the subclass; read-only).

        Raises
        ------
        ValueError
            If a value is missing, unknown, of the wrong type or out of range. The first line
            names the parameter: ``parameter 'height' = -3: must be >= 4``.
        """
        names = list(cls.model_fields)
        if _is_namespace(values):
            values = {name: values[name] for name in names if name in values}
        missing = [name for name in names if name not in values]
        if missing:  # the defaults are the parameters cell's business, not the declaration's
            raise ValueError("\n".join(f"parameter {name!r} is missing" for name in missing))
        data = {
            name: _parse_text(cls.model_fields[name].annotation, value)
            if name in cls.model_fields
            else value
            for name, value in values.items()
        }
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            message = _format_errors(exc, names)
            raise ValueError(message) from None

    @classmethod
    def sample(
        cls, rng: np.random.Generator, defaults: Mapping[str, Any] | None = None, **fixed: Any
    ) -> dict[str, Any]:
        """Draw a random valid set of values (the rules are in the module's notes).

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (seed it for a reproducible draw).
        defaults : mapping, optional
            The notebook's default values (those of its ``parameters`` cell), for fields
            declared without a default (``Field(ge=1, ...)``): the rules above use them.
        **fixed
            Values to keep as given instead of drawing them.

        Returns
        -------
        dict
            Name to value, accepted by :meth:`check`.

        Raises
        ------
        RuntimeError
            If no valid set was found in 200 draws (the cross-field conditions reject
            nearly everything the field rules draw).
        """
        defaults = dict(defaults or {})
        for name, info in cls.model_fields.items():
            if not info.is_required():
                defaults.setdefault(name, info.default)
        lacking = [name for name in cls.model_fields if name not in defaults and name not in fixed]
        if lacking:
            raise ValueError(
                f"{cls.__name__}.sample: no default for {', '.join(lacking)}; pass defaults="
            )
        last = None
        for _ in range(cls._max_draws):
            values = {
                name: fixed[name] if name in fixed else _draw(info, defaults[name], rng)
                for name, info in cls.model_fields.items()
            }
            try:
                cls.check(values)
                return values
            except ValueError as exc:
                last = exc
        raise RuntimeError(
            f"{cls.__name__}.sample: no valid draw in {cls._max_draws} tries; last error: {last}"
        )

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """One row (name, type, default, description) per parameter, e.g. for a table."""
        rows = []
        for name, info in cls.model_fields.items():
            kind = info.annotation
            kind = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
            rows.append(
                (
                    name,
                    kind,
                    "-" if info.is_required() else repr(info.default),
                    info.description or "",
                )
            )
        return rows


def _bounds(info: Any) -> tuple[float | None, float | None]:
    """Lower and upper bounds of a field (inclusive), from its ge/gt/le/lt metadata."""
    low = high = None
    for meta in info.metadata:
        if getattr(meta, "ge", None) is not None:
            low = meta.ge
        if getattr(meta, "gt", None) is not None:
            low = meta.gt
        if getattr(meta, "le", None) is not None:
            high = meta.le
        if getattr(meta, "lt", None) is not None:
            high = meta.lt
    return low, high


def _draw(info: Any, default: Any, rng: np.random.Generator) -> Any:
    """Draw one field's value by the rules of the module's notes."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    hint = extra.get("sample")
    if isinstance(hint, (list, tuple)):
        return hint[int(rng.integers(len(hint)))]
    annotation = info.annotation
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return choices[int(rng.integers(len(choices)))]
    if annotation is bool:
        return bool(rng.integers(2))
    if annotation in (int, float):
        low, high = _bounds(info)
        if high is None or hint == "small":
            high = default if high is None else min(high, default)
        if annotation is int:
            low = min(0, default) if low is None else low
            return int(rng.integers(int(low), int(high) + 1))
        if default > 0 and hint != "small":  # a tolerance or a rate: log-uniform around it
            low = max(default / 10, low if low is not None else 0.0)
            high = min(default * 10, high)
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        low = min(0.0, default) if low is None else low
        return float(rng.uniform(low, high))
    return default
