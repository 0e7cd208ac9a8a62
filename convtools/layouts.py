"""Layouts of N and Θ, and the objectives that read them.

N_tiny (A, C E) and N_full (A E, C) hold the same numbers; Θ is stored as (A, E, C) or read
as the (A) × (C E) matrix whose rank counts channels (column ``c E + e``).
"""

from __future__ import annotations

import torch

from ._checks import check_matrix, check_tensor

__all__ = [
    "n_full_to_tiny",
    "n_tiny_to_full",
    "objective",
    "s_tiny_from_full",
    "theta_from_tiny",
    "theta_of_factors",
    "theta_to_tiny",
    "tiny_objective",
]


def n_full_to_tiny(n_full: torch.Tensor, e: int) -> torch.Tensor:
    """Rearrange N_full (A E, C) into N_tiny (A, C E): the same numbers."""
    n_full = check_matrix("n_full", n_full)
    if n_full.shape[0] % e:
        raise ValueError(f"n_full has {n_full.shape[0]} rows, not a multiple of E = {e}")
    a, c = n_full.shape[0] // e, n_full.shape[1]
    return n_full.reshape(a, e, c).permute(0, 2, 1).reshape(a, c * e)


def n_tiny_to_full(n_tiny: torch.Tensor, e: int) -> torch.Tensor:
    """Rearrange N_tiny (A, C E) into N_full (A E, C)."""
    n_tiny = check_matrix("n_tiny", n_tiny)
    if n_tiny.shape[1] % e:
        raise ValueError(f"n_tiny has {n_tiny.shape[1]} columns, not a multiple of E = {e}")
    a, c = n_tiny.shape[0], n_tiny.shape[1] // e
    return n_tiny.reshape(a, c, e).permute(0, 2, 1).reshape(a * e, c)


def s_tiny_from_full(s_full: torch.Tensor, e: int) -> torch.Tensor:
    """``S_tiny = Σ_e S_full[(·, e), (·, e)]``: the diagonal blocks summed.

    Parameters
    ----------
    s_full : torch.Tensor
        (A E, A E)
    e : int
        number of kernel positions E of conv2

    Returns
    -------
    torch.Tensor
        (A, A)
    """
    s_full = check_matrix("s_full", s_full)
    if s_full.shape[0] != s_full.shape[1] or s_full.shape[0] % e:
        raise ValueError(
            f"s_full must be square of size A*E with E = {e}, got shape {tuple(s_full.shape)}"
        )
    a = s_full.shape[0] // e
    return torch.einsum("aebe -> ab", s_full.reshape(a, e, a, e))


def theta_to_tiny(theta: torch.Tensor) -> torch.Tensor:
    """Θ (A, E, C) as the (A) × (C E) matrix whose rank counts channels (column c E + e)."""
    theta = check_tensor("theta", theta)
    if theta.dim() != 3:
        raise ValueError(f"theta must have shape (A, E, C), got {tuple(theta.shape)}")
    return theta.permute(0, 2, 1).reshape(theta.shape[0], -1)


def theta_from_tiny(theta_tiny: torch.Tensor, e: int) -> torch.Tensor:
    """Inverse of :func:`theta_to_tiny`: (A, C E) -> (A, E, C)."""
    theta_tiny = check_matrix("theta_tiny", theta_tiny)
    if theta_tiny.shape[1] % e:
        raise ValueError(f"theta_tiny has {theta_tiny.shape[1]} columns, not a multiple of E = {e}")
    a, c = theta_tiny.shape[0], theta_tiny.shape[1] // e
    return theta_tiny.reshape(a, c, e).permute(0, 2, 1)


def objective(
    theta: torch.Tensor,
    s_full: torch.Tensor,
    n_full: torch.Tensor,
    v_sq_norm: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """True least-squares objective ``‖v‖² − 2⟨N_full, Θ⟩ + ⟨Θ, S_full Θ⟩``.

    Equals ``‖v_goal − conv2_ω(conv1_α(x))‖²`` for the Θ of the new neurons.

    Parameters
    ----------
    theta : torch.Tensor
        Θ, shape (A, E, C) or (A E, C)
    s_full, n_full : torch.Tensor
        (A E, A E) and (A E, C)
    v_sq_norm : float | torch.Tensor
        ‖v_goal‖²; with the default 0 the result is the objective minus that constant

    Returns
    -------
    torch.Tensor
        0-d tensor
    """
    theta = check_tensor("theta", theta)
    theta = theta.reshape(-1, theta.shape[-1])
    s_full = check_matrix("s_full", s_full, (theta.shape[0], theta.shape[0]))
    n_full = check_matrix("n_full", n_full, tuple(theta.shape))
    return v_sq_norm - 2 * (n_full * theta).sum() + (theta * (s_full @ theta)).sum()


def tiny_objective(
    theta_tiny: torch.Tensor,
    s_tiny: torch.Tensor,
    n_tiny: torch.Tensor,
    v_sq_norm: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """TINY's surrogate ``‖v‖² − 2⟨N_tiny, Θ_t⟩ + ⟨Θ_t, S_tiny Θ_t⟩`` with Θ_t (A, C E).

    Its exact minimizer under rank ≤ k is the closed form of
    :func:`convtools.optimal_added_parameters`; it equals :func:`objective` only when conv2
    is 1×1.
    """
    theta_tiny = check_matrix("theta_tiny", theta_tiny)
    s_tiny = check_matrix("s_tiny", s_tiny, (theta_tiny.shape[0], theta_tiny.shape[0]))
    n_tiny = check_matrix("n_tiny", n_tiny, tuple(theta_tiny.shape))
    return v_sq_norm - 2 * (n_tiny * theta_tiny).sum() + (theta_tiny * (s_tiny @ theta_tiny)).sum()


def theta_of_factors(alpha: torch.Tensor, omega: torch.Tensor, e: int) -> torch.Tensor:
    """Θ (A, E, C) of the neurons ``(alpha (A, k), omega (k, C E))``."""
    alpha = check_matrix("alpha", alpha)
    omega = check_matrix("omega", omega, (alpha.shape[1], None))
    return theta_from_tiny(alpha @ omega, e)
