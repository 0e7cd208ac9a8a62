r"""The exact k-channel optimum of the true linear objective, from S_full and N_full alone.

The problem (notebook 04): minimize over α (A, k) and ω (k, E, C)

.. math::

    F(α, ω) = ‖v‖² − 2⟨N_full, Θ⟩ + ⟨Θ, S_full Θ⟩ + λ (‖α‖² + ‖ω‖²),
    \qquad Θ[a, e, c] = Σ_j α[a, j] ω[j, e, c].

λ = 0 is the exact problem; λ > 0 adds the balanced-factor penalty, equal to 2λ‖Θ‖_* (the
nuclear norm of Θ read as an (A) × (C E) matrix). F is a quadratic in ω for fixed α and in
α for fixed ω, but not jointly convex: there is no single-SVD closed form (S_full is not a
Kronecker product), so it is solved iteratively, started from TINY's closed form.

Three algorithms, each a function of an :class:`ExactProblem` and a start:

- :func:`gauss_newton`: damped Gauss-Newton (Levenberg-Marquardt) on (α, ω) jointly; its
  linear system has ``A k + k E C`` unknowns. Fast and accurate while that is small.
- :func:`variable_projection`: ω eliminated (one PSD solve of size k E per evaluation) and
  the reduced objective ``g(α) = min_ω F(α, ω)`` minimized by L-BFGS
  (``torch.optim.LBFGS`` with a strong-Wolfe line search). One product with S_full per
  evaluation: the choice for large problems.
- :func:`alternating_least_squares`: exact block minimization in ω, then in α. Simple and
  monotone, but it crawls along the narrow valleys of F; kept as the reference algorithm
  (notebook 04 derives it) and as Gauss-Newton's fallback step.

:func:`exact_neurons` (``algorithm="auto"``) picks Gauss-Newton when ``A k + k E C`` is at
most ``GAUSS_NEWTON_SIZE`` and variable projection otherwise (see :func:`choose_algorithm`).
Every algorithm only accepts steps that do not increase F, so its history is non-increasing
and the result is never worse than the start.
"""

from __future__ import annotations

import torch

from ._checks import check_matrix, check_nonnegative, check_positive_int
from .exact_algorithms import (
    ExactProblem,
    alternating_least_squares,
    balanced,
    gauss_newton,
    variable_projection,
)

__all__ = [
    "ALGORITHMS",
    "GAUSS_NEWTON_SIZE",
    "ExactProblem",
    "alternating_least_squares",
    "choose_algorithm",
    "exact_neurons",
    "gauss_newton",
    "variable_projection",
]

ALGORITHMS = ("auto", "gauss_newton", "variable_projection", "alternating_least_squares")
GAUSS_NEWTON_SIZE = 600


_ALGORITHMS = {
    "gauss_newton": gauss_newton,
    "variable_projection": variable_projection,
    "alternating_least_squares": alternating_least_squares,
}


def choose_algorithm(
    a: int, e: int, c: int, k: int, gauss_newton_size: int = GAUSS_NEWTON_SIZE
) -> str:
    """The ``auto`` rule: Gauss-Newton while its system is small, else variable projection.

    Gauss-Newton solves a dense system of ``A k + k E C`` unknowns per iteration (cubic
    cost, quadratic memory) and converges in few iterations; variable projection costs one
    product with S_full, of size (A E)², per evaluation and needs more of them. Up to
    ``GAUSS_NEWTON_SIZE = 600`` unknowns the Gauss-Newton system (at most 600 × 600, 2.9 MB
    in float64) is solved in milliseconds, and Gauss-Newton is the more accurate of the
    two on the narrow valleys of F; beyond, its cubic cost takes over.

    Parameters
    ----------
    a, e, c, k : int
        A, E, C[+1] and the number of channels k
    gauss_newton_size : int
        the largest ``A k + k E C`` handed to Gauss-Newton

    Returns
    -------
    str
        "gauss_newton" or "variable_projection"
    """
    unknowns = a * k + k * e * c
    return "gauss_newton" if unknowns <= gauss_newton_size else "variable_projection"


def exact_neurons(
    s_full: torch.Tensor,
    n_full: torch.Tensor,
    alpha0: torch.Tensor,
    omega0: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-10,
    v_sq_norm: float | torch.Tensor | None = None,
    rtol: float | None = None,
    penalty: float = 0.0,
    algorithm: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The exact k-channel optimum of the true objective, from S_full and N_full alone.

    Minimizes ``F(α, ω) = ‖v‖² − 2⟨N_full, Θ⟩ + ⟨Θ, S_full Θ⟩ + λ(‖α‖² + ‖ω‖²)`` (module
    docstring) from the start (α0, ω0), e.g. TINY's closed form.

    Parameters
    ----------
    s_full : torch.Tensor
        S_full, shape (A E, A E)
    n_full : torch.Tensor
        N_full, shape (A E, C)
    alpha0 : torch.Tensor
        starting α, shape (A, k)
    omega0 : torch.Tensor
        starting ω, shape (k, C E), column ``c E + e`` (TINY's layout)
    max_iter : int
        at most this many iterations of the algorithm
    tol : float
        stop when an iteration improves F by at most ``tol * scale``, where scale is
        ``v_sq_norm`` when given, else ``|F(start)|``
    v_sq_norm : float | torch.Tensor | None
        ‖v‖²; when given, the history holds F itself (the squared residual plus the
        penalty), otherwise F minus ‖v‖²
    rtol : float | None
        relative eigenvalue cut-off of the PSD solves; default: the machine epsilon of
        ``s_full``'s dtype times the size of each system
    penalty : float
        λ >= 0; 0 is the exact problem, λ > 0 the nuclear-norm-regularized one
    algorithm : {"auto", "gauss_newton", "variable_projection", "alternating_least_squares"}
        "auto" follows :func:`choose_algorithm`

    Returns
    -------
    alpha : torch.Tensor
        shape (A, k)
    omega : torch.Tensor
        shape (k, C E); ``α ω`` is balanced (both carry √σ of the SVD of Θ read as an
        (A) × (C E) matrix)
    history : list[float]
        F at the start and after each accepted iteration, non-increasing
    """
    s_full = check_matrix("s_full", s_full)
    alpha0 = check_matrix("alpha0", alpha0)
    a, k = alpha0.shape
    if s_full.shape[0] != s_full.shape[1] or s_full.shape[0] % a:
        raise ValueError(
            f"s_full must be square of size A*E with A = {a} (alpha0 has shape "
            f"{tuple(alpha0.shape)}), got shape {tuple(s_full.shape)}"
        )
    e = s_full.shape[0] // a
    n_full = check_matrix("n_full", n_full, (a * e, None))
    c = n_full.shape[1]
    omega0 = check_matrix("omega0", omega0, (k, c * e))
    check_positive_int("max_iter", max_iter)
    tol = check_nonnegative("tol", tol)
    penalty = check_nonnegative("penalty", penalty)
    if rtol is not None:
        rtol = check_nonnegative("rtol", rtol)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return _exact_neurons(
        s_full, n_full, alpha0, omega0, max_iter, tol, v_sq_norm, rtol, penalty, algorithm
    )


def _exact_neurons(
    s_full,
    n_full,
    alpha0,
    omega0,
    max_iter=500,
    tol=1e-10,
    v_sq_norm=None,
    rtol=None,
    penalty=0.0,
    algorithm="auto",
):
    """:func:`exact_neurons` without the checks (arguments already validated)."""
    a, k = alpha0.shape
    constant = 0.0 if v_sq_norm is None else float(v_sq_norm)
    problem = ExactProblem.from_statistics(s_full, n_full, a, constant, penalty, rtol)
    _, e, c = problem.sizes
    if algorithm == "auto":
        algorithm = choose_algorithm(a, e, c, k)
    work = problem.s4.dtype
    alpha = alpha0.to(work)
    w3 = omega0.to(work).reshape(k, c, e).permute(0, 2, 1)  # ω as (k, E, C)
    start = problem.value(alpha, w3)
    scale = abs(constant) if v_sq_norm is not None else abs(start)
    alpha, w3, history = _ALGORITHMS[algorithm](
        problem, alpha, w3, max_iter, tol, scale if scale > 0 else 1.0
    )
    alpha, w3 = balanced(alpha, w3)
    if problem.penalty:  # balancing can only lower the penalty: record it
        history[-1] = min(history[-1], problem.value(alpha, w3))
    omega = w3.permute(0, 2, 1).reshape(k, c * e)
    return alpha.to(n_full.dtype), omega.to(n_full.dtype), history
