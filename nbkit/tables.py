"""Plain-text tables (with ``tabulate``), reproducible under nbval."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate

__all__ = ["format_table"]


def _is_number(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], floatfmt: str = ".3g"
) -> str:
    """Format a small table as aligned plain text.

    Parameters
    ----------
    headers : sequence of str
        Column titles.
    rows : iterable of sequences
        One sequence per row, as long as ``headers``. Floats are written with ``floatfmt``,
        everything else with ``str``; strings are kept as they are (never re-read as numbers).
    floatfmt : str, default ".3g"
        Format of floats: few significant digits keep outputs reproducible.

    Returns
    -------
    str
        The table (tabulate's "simple" format); numeric columns right-aligned.

    Raises
    ------
    ValueError
        If a row's length differs from the number of headers.

    Examples
    --------
    >>> print(format_table(["case", "error"], [["a", 0.5], ["bb", 1e-3]]))
    case      error
    ------  -------
    a           0.5
    bb        0.001
    """
    rows = [list(row) for row in rows]
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} entries but there are {len(headers)} headers")
    numeric = [bool(rows) and all(_is_number(row[j]) for row in rows) for j in range(len(headers))]
    cells = [[format(v, floatfmt) if isinstance(v, float) else str(v) for v in row] for row in rows]
    return tabulate(
        cells,
        headers=[str(h) for h in headers],
        tablefmt="simple",
        disable_numparse=True,
        colalign=["right" if num else "left" for num in numeric],
    )
