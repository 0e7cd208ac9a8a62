"""Numerical checks that print a short verdict and stop the notebook when they fail."""

from __future__ import annotations

import torch

__all__ = ["check", "check_close", "rel_err", "rounding_cutoff", "show", "verdict"]


def rel_err(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative Frobenius distance ``||got - expected|| / ||expected||``.

    Parameters
    ----------
    got, expected : torch.Tensor
        Same shape (broadcasting is refused, to catch layout mistakes).

    Returns
    -------
    float
        The distance; ``||got||`` itself when ``expected`` is zero.
    """
    if got.shape != expected.shape:
        raise AssertionError(f"shapes differ: {tuple(got.shape)} != {tuple(expected.shape)}")
    got, expected = got.detach(), expected.detach().to(got.dtype)
    return float((got - expected).norm() / expected.norm().clamp_min(1e-300))


def check(name: str, value: float, tolerance: float) -> None:
    """Print ``ok  name`` when ``value <= tolerance``; raise AssertionError otherwise.

    The printed line holds no number: round-off changes with the machine and thread count,
    the verdict does not.

    Parameters
    ----------
    name : str
        What is checked, e.g. ``"S_tiny = sum of the diagonal blocks"``.
    value : float
        An error (non-negative); NaN fails.
    tolerance : float
        Largest accepted value.

    Raises
    ------
    AssertionError
        ``name: 0.3 > 1e-10``.
    """
    if not value <= tolerance:
        raise AssertionError(f"{name}: {value:.3g} > {tolerance:.0e}")
    print(f"ok  {name}")


def check_close(name: str, got: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    """:func:`check` of the relative error of ``got`` against ``expected`` (same shapes)."""
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(got.shape)} != {tuple(expected.shape)}")
    check(name, rel_err(got, expected), tolerance)


def show(value: float, small: float, digits: int = 3) -> str:
    """A number with few significant digits, or ``< small`` below ``small`` (rounding level).

    Examples
    --------
    >>> show(0.01234, 1e-6), show(3e-17, 1e-6)
    ('0.0123', '< 1e-06')
    """
    return f"< {small:.0e}" if abs(value) < small else f"{value:.{digits}g}"


def rounding_cutoff(s: torch.Tensor) -> float:
    """Eigenvalue cut-off at the rounding level of a symmetric matrix: λ_max · d · eps."""
    top = float(torch.linalg.eigvalsh(s.double()).max())
    return top * s.shape[0] * torch.finfo(s.dtype).eps


def verdict(statement: str, holds: bool) -> str:
    """``statement: yes`` or ``statement: no``, for a claim that depends on the parameters.

    A claim that holds for the defaults but may not for other values is printed as a verdict
    computed from the numbers, never asserted.
    """
    return f"{statement}: {'yes' if holds else 'no'}"
