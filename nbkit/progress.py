"""A plain-text progress bar whose stored output is the same on every run."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.std import tqdm

__all__ = ["progress"]


class _PlainProgress(tqdm):
    """A text tqdm without its monitor thread (which could refresh at any moment)."""

    monitor_interval = 0


def progress(
    iterable: Iterable[Any] | None = None,
    total: int | None = None,
    desc: str | None = None,
    *,
    leave: bool = True,
) -> tqdm:
    r"""Wrap an iterable in a plain-text progress bar that nbval can compare.

    The bar shows the description, the percentage, the bar and ``n/total``: no time, rate or
    estimate. It writes to standard output with ``\r`` between refreshes, at most every 30 s;
    a notebook (like a terminal) keeps what follows the last ``\r``, so a finished loop always
    leaves the same line, e.g. ``sweep: 100%|##########| 5/5``. It is ``tqdm.std.tqdm``, not
    ``tqdm.auto`` (which, without ipywidgets, warns on stderr with a file path).

    Parameters
    ----------
    iterable : iterable or None
        What to iterate over; None gives a manual bar (call ``.update()``).
    total : int or None
        Number of items; taken from ``len(iterable)`` when omitted and available.
    desc : str or None
        Short label before the bar.
    leave : bool, default True
        Keep the final bar in the output.

    Returns
    -------
    tqdm.std.tqdm
        Iterate over it as over ``iterable``; print after the loop, not inside it.
    """
    if total is None and iterable is not None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if total is not None:
        bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt}"
    else:
        bar_format = "{desc}{n_fmt} it"
        desc = f"{desc}: " if desc else desc
    return _PlainProgress(
        iterable,
        total=total,
        desc=desc,
        leave=leave,
        file=sys.stdout,
        ascii=True,
        ncols=60,
        bar_format=bar_format,
        mininterval=30.0,
        dynamic_ncols=False,
        disable=False,
    )
