"""Helpers shared by the notebooks: parameter checks, devices, seeds, progress bars.

Every notebook of the collection starts with a ``parameters`` cell (re-run with new values by
papermill) followed by a cell that validates each value with the functions below. A bad value
then stops the notebook at once with a message that names the parameter, instead of failing
many cells later with an obscure shape error.

The module also holds what keeps the committed outputs reproducible under ``nbval``:
:func:`seed_everything` and :func:`progress`, a plain-text progress bar whose stored output is
the same on every run, and :func:`format_table` for small plain-text tables.
"""

from __future__ import annotations

import math
import numbers
import random
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import tqdm

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_int_list",
    "check_int_pair",
    "format_table",
    "progress",
    "resolve_device",
    "resolve_dtype",
    "seed_everything",
]

_DEVICE_CHOICES = ("cpu", "cuda", "cuda:N", "auto")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_MAX_SEED = 2**32 - 1  # numpy's legacy seeding accepts [0, 2**32)


def _describe(value: Any) -> str:
    """Return ``repr(value)`` with its type, for error messages."""
    return f"{value!r} (of type {type(value).__name__})"


def _is_int(value: Any) -> bool:
    """Tell whether ``value`` is an integer (Python or NumPy), booleans excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    """Tell whether ``value`` is a real number (Python or NumPy), booleans excluded."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int | None = 1, maximum: int | None = None) -> int:
    """Check that a parameter is an integer within bounds.

    Parameters
    ----------
    name : str
        Name of the parameter, used in error messages.
    value : object
        Value to check. Python and NumPy integers are accepted; booleans and floats are not
        (``4.0`` is refused, so that a typo such as ``-p n 4.5`` cannot pass unnoticed).
    minimum : int or None, default 1
        Smallest allowed value (inclusive), or None for no lower bound.
    maximum : int or None, default None
        Largest allowed value (inclusive), or None for no upper bound.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If ``value`` is out of bounds.

    Examples
    --------
    >>> check_int("n", 4)
    4
    >>> check_int("n", 0)
    Traceback (most recent call last):
    ...
    ValueError: n must be an integer >= 1, got 0
    """
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    value = int(value)
    if minimum is not None and maximum is not None:
        bounds = f"in [{minimum}, {maximum}]"
    elif minimum is not None:
        bounds = f">= {minimum}"
    else:
        bounds = f"<= {maximum}"
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {bounds}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    allow_inf: bool = False,
) -> float:
    """Check that a parameter is a real number within bounds.

    Parameters
    ----------
    name : str
        Name of the parameter, used in error messages.
    value : object
        Value to check: a Python or NumPy real number (integers are accepted and converted).
        Booleans are refused, and so is NaN.
    minimum, maximum : float or None, default None
        Bounds, or None for none.
    min_inclusive, max_inclusive : bool, default True
        Whether the bounds themselves are allowed (False gives e.g. "> 0").
    allow_inf : bool, default False
        Whether an infinite value is allowed (it must still respect the bounds).

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If ``value`` is NaN, infinite (unless allowed) or out of bounds.

    Examples
    --------
    >>> check_float("lr", 1e-2, minimum=0, min_inclusive=False)
    0.01
    """
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        below = value < minimum if min_inclusive else value <= minimum
        if below:
            op = ">=" if min_inclusive else ">"
            raise ValueError(f"{name} must be {op} {minimum}, got {value}")
    if maximum is not None:
        above = value > maximum if max_inclusive else value >= maximum
        if above:
            op = "<=" if max_inclusive else "<"
            raise ValueError(f"{name} must be {op} {maximum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Check that a parameter is a boolean.

    Parameters
    ----------
    name : str
        Name of the parameter, used in error messages.
    value : object
        ``True`` or ``False`` (NumPy booleans are accepted). Strings such as ``"yes"`` are not:
        papermill already turns ``-p flag True`` into a boolean.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        If ``value`` is not a boolean.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that a parameter is one of a few allowed values.

    Parameters
    ----------
    name : str
        Name of the parameter, used in error messages.
    value : object
        Value to check.
    choices : iterable
        Allowed values.

    Returns
    -------
    object
        ``value`` unchanged.

    Raises
    ------
    ValueError
        If ``value`` is not among ``choices``; the message lists them.

    Examples
    --------
    >>> check_choice("method", "tiny", ("tiny", "full", "exact"))
    'tiny'
    """
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable value
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def _parse_int_sequence(name: str, value: Any) -> list[Any]:
    """Turn a list, tuple, range, 1-D array or a string such as ``"1,2,4"`` into a list."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[(" and text[-1:] in "])":
            text = text[1:-1]
        items = [item.strip() for item in text.split(",") if item.strip()]
        parsed = []
        for item in items:
            try:
                parsed.append(int(item))
            except ValueError:
                raise TypeError(
                    f"{name} must be a list of integers, got {value!r} ({item!r} is not one)"
                ) from None
        return parsed
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError(f"{name} must be a 1-D list of integers, got an array of shape "
                            f"{value.shape}")
        return list(value)
    if isinstance(value, (Sequence, range)) and not isinstance(value, (bytes, bytearray)):
        return list(value)
    raise TypeError(f"{name} must be a list of integers, got {_describe(value)}")


def check_int_list(
    name: str,
    value: Any,
    minimum: int | None = 1,
    maximum: int | None = None,
    *,
    min_length: int = 1,
    max_length: int | None = None,
    unique: bool = False,
    increasing: bool = False,
) -> list[int]:
    """Check a list of integers, e.g. the values of a sweep.

    Parameters
    ----------
    name : str
        Name of the parameter, used in error messages.
    value : list, tuple, range, 1-D array or str
        The integers. A string ``"1,2,4"`` or ``"[1, 2, 4]"`` is accepted too, because
        ``papermill -p ks "[1, 2, 4]"`` passes a string (``-y`` passes YAML instead).
    minimum, maximum : int or None
        Bounds for every element, as in :func:`check_int`.
    min_length : int, default 1
        Fewest elements allowed.
    max_length : int or None, default None
        Most elements allowed, or None for no limit.
    unique : bool, default False
        Whether repeated values are refused.
    increasing : bool, default False
        Whether the values must be strictly increasing.

    Returns
    -------
    list of int

    Raises
    ------
    TypeError
        If ``value`` is not a sequence of integers.
    ValueError
        If an element is out of bounds, or the length or order is wrong.

    Examples
    --------
    >>> check_int_list("ks", "1, 2, 4")
    [1, 2, 4]
    """
    items = _parse_int_sequence(name, value)
    checked = [
        check_int(f"{name}[{i}]", item, minimum=minimum, maximum=maximum)
        for i, item in enumerate(items)
    ]
    if len(checked) < min_length:
        raise ValueError(f"{name} must have at least {min_length} element(s), got {checked}")
    if max_length is not None and len(checked) > max_length:
        raise ValueError(f"{name} must have at most {max_length} element(s), got {checked}")
    if unique and len(set(checked)) != len(checked):
        raise ValueError(f"{name} must not repeat a value, got {checked}")
    if increasing and any(b <= a for a, b in zip(checked, checked[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {checked}")
    return checked


def check_int_pair(
    name: str, value: Any, minimum: int | None = 1, maximum: int | None = None
) -> tuple[int, int]:
    """Check a size given as one integer or as a pair ``(height, width)``.

    Parameters
    ----------
    name : str
        Name of the parameter, used in error messages.
    value : int or sequence of two ints or str
        ``3`` means ``(3, 3)``; ``(3, 2)``, ``[3, 2]`` and ``"3,2"`` mean ``(3, 2)``.
    minimum, maximum : int or None
        Bounds for both numbers, as in :func:`check_int`.

    Returns
    -------
    tuple of two ints

    Raises
    ------
    TypeError, ValueError
        As :func:`check_int`, or if a sequence does not have two elements.

    Examples
    --------
    >>> check_int_pair("kernel_size", 3)
    (3, 3)
    """
    if _is_int(value):
        v = check_int(name, value, minimum=minimum, maximum=maximum)
        return (v, v)
    items = check_int_list(name, value, minimum=minimum, maximum=maximum, min_length=2,
                           max_length=2)
    return (items[0], items[1])


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn a ``device`` parameter into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``; ``"cuda"`` or ``"cuda:N"`` for a GPU, which must exist; or ``"auto"``, the
        first GPU when one is available and the CPU otherwise. Case and surrounding spaces are
        ignored.

    Returns
    -------
    torch.device

    Raises
    ------
    TypeError
        If ``device`` is neither a string nor a :class:`torch.device`.
    ValueError
        If the string is not one of the forms above, or asks for a GPU that is not there.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        text = str(device)
    elif isinstance(device, str):
        text = device.strip().lower()
    else:
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', "
                        f"got {_describe(device)}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = None
        if text != "cuda":
            suffix = text[len("cuda:"):]
            if not suffix.isdigit():
                raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' (N a GPU number) or "
                                 f"'auto'; got {device!r}")
            index = int(suffix)
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but no CUDA device is available "
                             f"on this machine; use device='cpu' or device='auto'")
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            raise ValueError(f"device={device!r} was requested but only {count} CUDA "
                             f"device(s) are available (cuda:0 to cuda:{count - 1})")
        return torch.device("cuda" if index is None else f"cuda:{index}")
    choices = ", ".join(repr(c) for c in _DEVICE_CHOICES)
    raise ValueError(f"device must be one of {choices}; got {device!r}")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Turn a ``dtype`` parameter into a floating :class:`torch.dtype`.

    Parameters
    ----------
    dtype : str or torch.dtype
        ``"float32"`` or ``"float64"`` (``"torch.float32"`` is accepted too), or
        ``torch.float32`` / ``torch.float64`` themselves.

    Returns
    -------
    torch.dtype

    Raises
    ------
    TypeError
        If ``dtype`` is neither a string nor a :class:`torch.dtype`.
    ValueError
        If it names another type.

    Examples
    --------
    >>> resolve_dtype("float64")
    torch.float64
    """
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {_describe(dtype)}")
    text = dtype.strip().lower().removeprefix("torch.")
    if text not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return _DTYPES[text]


def seed_everything(seed: int) -> int:
    """Seed Python's, NumPy's and PyTorch's random number generators.

    Parameters
    ----------
    seed : int
        Non-negative integer below 2**32.

    Returns
    -------
    int
        The seed, as a Python int.

    Raises
    ------
    TypeError, ValueError
        If ``seed`` is not an integer in [0, 2**32 - 1].

    Notes
    -----
    ``torch.manual_seed`` also seeds every CUDA device. Results on a GPU still differ from
    those on the CPU in the last digits, which is why the notebooks print few digits and check
    values with tolerances.
    """
    seed = check_int("seed", seed, minimum=0, maximum=_MAX_SEED)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


class _PlainProgress(tqdm.tqdm):
    """A text tqdm without its monitor thread (which could refresh at any moment)."""

    monitor_interval = 0


def progress(
    iterable: Iterable[Any] | None = None,
    total: int | None = None,
    desc: str | None = None,
    *,
    leave: bool = True,
) -> tqdm.tqdm:
    """Wrap an iterable in a plain-text progress bar that is reproducible under nbval.

    The bar shows only the description, the percentage, the bar and ``n/total``: no elapsed
    time, rate or estimate. It is written to standard output with ``\\r`` between refreshes;
    nbval (like a terminal) keeps only what follows the last ``\\r`` of a line, so the stored
    output of a finished loop is always the same line, e.g.
    ``sweep: 100%|##########| 5/5``, however often it was refreshed on the way.

    Parameters
    ----------
    iterable : iterable or None
        What to iterate over. None gives a manual bar (call ``.update()``).
    total : int or None
        Number of items; taken from ``len(iterable)`` when omitted and available.
    desc : str or None
        Short label shown before the bar.
    leave : bool, default True
        Keep the final bar on screen (and in the notebook) when the loop ends.

    Returns
    -------
    tqdm.tqdm
        Iterate over it as over ``iterable``. Don't print inside the loop (the lines would mix
        with the bar); use ``bar.write(...)`` or print after the loop.

    Examples
    --------
    >>> total = 0
    >>> for i in progress(range(3), desc="demo"):  # doctest: +SKIP
    ...     total += i
    """
    if total is None and iterable is not None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if total is not None:
        total = check_int("total", total, minimum=0)
        bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt}"
    else:
        bar_format = "{desc}{n_fmt} it"
        if desc:
            desc = f"{desc}: "
    return _PlainProgress(
        iterable,
        total=total,
        desc=desc,
        leave=leave,
        file=sys.stdout,
        ascii=True,
        ncols=60,
        bar_format=bar_format,
        mininterval=0.5,
        dynamic_ncols=False,
        disable=False,
    )


def format_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    floatfmt: str = ".3g",
) -> str:
    """Format a small table as aligned plain text (pandas is not a dependency).

    Parameters
    ----------
    headers : sequence of str
        Column titles.
    rows : iterable of sequences
        One sequence per row, with as many entries as ``headers``. Floats are formatted with
        ``floatfmt``; everything else with ``str``.
    floatfmt : str, default ".3g"
        Format specification for floats (few significant digits keep outputs reproducible).

    Returns
    -------
    str
        The table, columns separated by two spaces, numbers right-aligned, with a rule under
        the header. Print it.

    Raises
    ------
    ValueError
        If a row does not have as many entries as ``headers``.

    Examples
    --------
    >>> print(format_table(["case", "error"], [["a", 0.5], ["bb", 1e-3]]))
    case  error
    ----  -----
    a       0.5
    bb    0.001
    """
    headers = [str(h) for h in headers]
    cells: list[list[str]] = []
    numeric: list[list[bool]] = []
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} entries but there are {len(headers)} "
                             f"headers")
        cells.append([format(v, floatfmt) if isinstance(v, float) else str(v) for v in row])
        numeric.append([_is_real(v) for v in row])
    widths = [max([len(h)] + [len(r[j]) for r in cells]) for j, h in enumerate(headers)]
    numeric_columns = [bool(cells) and all(num[j] for num in numeric) for j in range(len(headers))]
    lines = ["  ".join(h.rjust(w) if isnum else h.ljust(w)
                       for h, w, isnum in zip(headers, widths, numeric_columns)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r, num in zip(cells, numeric):
        parts = [c.rjust(w) if isnum else c.ljust(w) for c, w, isnum in zip(r, widths, num)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
