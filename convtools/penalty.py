r"""The penalty λ of the nuclear-norm-regularized exact solver: its scale and its choice.

:func:`convtools.exact.exact_neurons` with ``penalty=λ`` minimizes
``f(α, ω) + λ(‖α‖² + ‖ω‖²)`` (= f + 2λ‖Θ‖_* at balanced factors) from S_full and N_full
alone. :func:`penalty_max` gives the natural scale of λ, :func:`select_penalty` chooses a
fraction of it on held-out statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import check_matrix, check_nonnegative, check_positive_int
from .exact import _exact_neurons
from .layouts import n_full_to_tiny, theta_of_factors

__all__ = ["PENALTY_FRACTIONS", "penalty_max", "select_penalty"]

PENALTY_FRACTIONS = (0.0, 0.01, 0.03, 0.1, 0.3)


# --------------------------------------------------------------------------- λ


def penalty_max(n_full: torch.Tensor, e: int) -> float:
    """``λ_max = ‖N_tiny‖₂``: the smallest λ at which the regularized optimum is Θ = 0.

    The regularized exact problem ``min ‖v‖² − 2⟨N, Θ⟩ + ⟨Θ, S Θ⟩ + λ(‖α‖² + ‖ω‖²)``
    equals, over balanced factors, ``… + 2λ‖Θ‖_*`` with Θ read as (A) × (C[+1] E). Its
    subgradient at Θ = 0 contains zero iff the operator norm of N in that reading (N_tiny)
    is at most λ. So λ is best given as a fraction ρ = λ / λ_max in [0, 1): ρ = 0 is the
    exact problem, ρ → 1 keeps only the top singular direction of N_tiny with a vanishing
    amplitude (a GradMax-like rule). λ_max has the units of N (sums, not means), so a fixed
    ρ means the same thing for any batch size.

    Parameters
    ----------
    n_full : torch.Tensor
        N_full, shape (A E, C[+1])
    e : int
        kernel positions E of conv2

    Returns
    -------
    float
        the largest singular value of N_tiny (A, C[+1] E)
    """
    n_full = check_matrix("n_full", n_full)
    check_positive_int("e", e)
    return _penalty_max(n_full, e)


def _penalty_max(n_full, e):
    n_tiny = n_full_to_tiny(n_full, e)
    return float(torch.linalg.matrix_norm(n_tiny.double(), ord=2))


def _scaled_objective(theta, s_full, n_full, v_sq):
    """Minimum over γ ≥ 0 of ‖v − γ XΘ‖² = ‖v‖² − ⟨N, Θ⟩₊² / ⟨Θ, S Θ⟩, from statistics alone."""
    theta = theta.reshape(-1, theta.shape[-1]).double()
    num = float((n_full.double() * theta).sum())
    den = float((theta * (s_full.double() @ theta)).sum())
    if den <= 0 or num <= 0:
        return float(v_sq)
    return float(v_sq) - num * num / den


def select_penalty(
    s_train: torch.Tensor,
    n_train: torch.Tensor,
    s_val: torch.Tensor,
    n_val: torch.Tensor,
    v_val_sq: float,
    alpha0: torch.Tensor,
    omega0: torch.Tensor,
    fractions: Sequence[float] = PENALTY_FRACTIONS,
    max_iter: int = 200,
    tol: float = 1e-10,
    v_train_sq: float | None = None,
) -> tuple[float, list[dict]]:
    """Choose λ of the regularized exact solver on held-out statistics.

    For each ρ in ``fractions`` the regularized exact neurons are fitted on the training
    statistics, ``λ = ρ · penalty_max(n_train, E)``, started from (α0, ω0); each solution is
    scored on held-out statistics (S_val, N_val, ‖v_val‖² of other images and their desired
    update) by the linear objective at its best non-negative amplitude,
    ``‖v‖² − ⟨N_val, Θ⟩₊² / ⟨Θ, S_val Θ⟩`` (the network's amplitude is line-searched anyway,
    so the scale of Θ does not count). Everything uses statistics only, no images.

    Parameters
    ----------
    s_train, n_train : torch.Tensor
        S_full (A E, A E) and N_full (A E, C[+1]) of the training images
    s_val, n_val : torch.Tensor
        the same of held-out images
    v_val_sq : float
        ‖v_val‖² of the held-out desired update
    alpha0, omega0 : torch.Tensor
        start, shapes (A, k) and (k, C[+1] E) (e.g. TINY's closed form)
    fractions : sequence of float
        the ρ = λ / λ_max tried, each in [0, 1)
    max_iter, tol : int, float
        passed to :func:`convtools.exact.exact_neurons`
    v_train_sq : float | None
        ‖v_train‖², for the training objective reported in the table

    Returns
    -------
    penalty : float
        the selected λ
    table : list[dict]
        per ρ: ``fraction``, ``penalty``, ``train`` (regularized objective at the end, or
        minus ‖v‖² without ``v_train_sq``), ``val`` (held-out score, divided by
        ``v_val_sq``), ``alpha``, ``omega``
    """
    s_train = check_matrix("s_train", s_train)
    alpha0 = check_matrix("alpha0", alpha0)
    a, k = alpha0.shape
    if s_train.shape[0] != s_train.shape[1] or s_train.shape[0] % a:
        raise ValueError(
            f"s_train must be square of size A*E with A = {a}, got shape {tuple(s_train.shape)}"
        )
    e = s_train.shape[0] // a
    n_train = check_matrix("n_train", n_train, (a * e, None))
    s_val = check_matrix("s_val", s_val, tuple(s_train.shape))
    n_val = check_matrix("n_val", n_val, tuple(n_train.shape))
    omega0 = check_matrix("omega0", omega0, (k, n_train.shape[1] * e))
    v_val_sq = check_nonnegative("v_val_sq", float(v_val_sq))
    fractions = list(fractions)
    if not fractions:
        raise ValueError("fractions must not be empty")
    for rho in fractions:
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 <= rho < 1:
            raise ValueError(f"fractions must lie in [0, 1), got {rho!r}")
    check_positive_int("max_iter", max_iter)
    tol = check_nonnegative("tol", tol)
    return _select_penalty(
        s_train,
        n_train,
        s_val,
        n_val,
        v_val_sq,
        alpha0,
        omega0,
        fractions,
        max_iter,
        tol,
        v_train_sq,
    )


def _select_penalty(
    s_train,
    n_train,
    s_val,
    n_val,
    v_val_sq,
    alpha0,
    omega0,
    fractions,
    max_iter=200,
    tol=1e-10,
    v_train_sq=None,
):
    """:func:`select_penalty` without the checks."""
    e = s_train.shape[0] // alpha0.shape[0]
    lam_max = _penalty_max(n_train, e)
    table = []
    for rho in fractions:
        lam = rho * lam_max
        alpha, omega, history = _exact_neurons(
            s_train, n_train, alpha0, omega0, max_iter, tol, v_train_sq, None, lam, "auto"
        )
        theta = theta_of_factors(alpha, omega, e)
        score = _scaled_objective(theta, s_val, n_val, v_val_sq)
        table.append(
            {
                "fraction": rho,
                "penalty": lam,
                "train": history[-1],
                "val": score / v_val_sq if v_val_sq > 0 else 0.0,
                "alpha": alpha,
                "omega": omega,
            }
        )
    best = min(table, key=lambda row: row["val"])
    return best["penalty"], table
