"""Closed forms: PSD solves, TINY's optimal neurons, the optimal update of one convolution.

The solvers work from the sufficient statistics (S, N) alone. They compute in float64
(where the device supports it) and return results in the dtype of their inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import (
    check_conv,
    check_image,
    check_matrix,
    check_nonnegative,
    check_positive_int,
    check_square,
)
from .geometry import _unfold_input, conv_output_size

__all__ = [
    "optimal_added_parameters",
    "optimal_delta",
    "project_goal",
    "solve_psd",
    "sqrt_inverse_psd",
]


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    """float64, except on devices without it (MPS)."""
    return torch.float32 if t.device.type == "mps" else torch.float64


def sqrt_inverse_psd(s: torch.Tensor, threshold: float = 1e-6) -> torch.Tensor:
    """``S^{-1/2}`` of a symmetric positive semi-definite matrix, on its significant part.

    Eigenvalues ``<= threshold`` (absolute) are dropped, as in gromo's
    ``sqrt_inverse_matrix_semi_positive``.

    Parameters
    ----------
    s : torch.Tensor
        S, shape (d, d), symmetric (it is symmetrized)
    threshold : float
        eigenvalues at or below it count as zero

    Returns
    -------
    torch.Tensor
        shape (d, d), in ``s``'s dtype
    """
    s = check_square("s", s)
    return _sqrt_inverse_psd(s, check_nonnegative("threshold", threshold))


def _sqrt_inverse_psd(s: torch.Tensor, threshold: float) -> torch.Tensor:
    """:func:`sqrt_inverse_psd` without the checks."""
    work = s.to(_work_dtype(s))
    eigenvalues, eigenvectors = torch.linalg.eigh((work + work.T) / 2)
    keep = eigenvalues > threshold
    vectors = eigenvectors[:, keep]
    return ((vectors * eigenvalues[keep].rsqrt()) @ vectors.T).to(s.dtype)


def solve_psd(s: torch.Tensor, rhs: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Minimum-norm solution of ``S W = rhs`` for a symmetric PSD, possibly singular, S.

    This is the pseudo-inverse solve ``W = S⁺ rhs`` restricted to eigenvalues above
    ``rtol * λ_max``. It minimizes ``⟨W, S W⟩ − 2⟨rhs, W⟩`` exactly whenever rhs lies in the
    range of S (always the case for S = XᵀX, rhs = XᵀY). Unlike ``torch.linalg.lstsq``'s
    default CPU driver (gelsy, which can return a wrong solution on such problems) it is
    right on rank-deficient S, on every device.

    Parameters
    ----------
    s : torch.Tensor
        S, shape (d, d)
    rhs : torch.Tensor
        shape (d,) or (d, t)
    rtol : float | None
        relative eigenvalue cut-off; default ``d * eps`` of ``s``'s dtype (the precision S
        was computed in: a float32 S carries float32 round-off in its null space)

    Returns
    -------
    torch.Tensor
        W, the shape of ``rhs``, in ``rhs``'s dtype
    """
    s = check_square("s", s)
    if not isinstance(rhs, torch.Tensor) or rhs.dim() not in (1, 2) or rhs.shape[0] != s.shape[0]:
        shape = tuple(rhs.shape) if isinstance(rhs, torch.Tensor) else type(rhs).__name__
        raise ValueError(
            f"rhs must have shape ({s.shape[0]},) or ({s.shape[0]}, t) to match "
            f"s {tuple(s.shape)}, got {shape}"
        )
    if rtol is None:
        rtol = s.shape[0] * torch.finfo(s.dtype).eps
    return _solve_psd(s, rhs, check_nonnegative("rtol", rtol))


def _solve_psd(s: torch.Tensor, rhs: torch.Tensor, rtol: float) -> torch.Tensor:
    """:func:`solve_psd` without the checks."""
    work_dtype = _work_dtype(s)
    work = s.to(work_dtype)
    eigenvalues, eigenvectors = torch.linalg.eigh((work + work.T) / 2)
    top = eigenvalues.abs().max()
    keep = eigenvalues > rtol * top if top > 0 else torch.zeros_like(eigenvalues, dtype=bool)
    vectors = eigenvectors[:, keep]
    coords = vectors.T @ rhs.to(work_dtype)
    coords = coords / (eigenvalues[keep][:, None] if coords.dim() == 2 else eigenvalues[keep])
    return (vectors @ coords).to(rhs.dtype)


def optimal_added_parameters(
    s: torch.Tensor,
    n: torch.Tensor,
    numerical_threshold: float = 1e-6,
    statistical_threshold: float = 1e-3,
    max_neurons: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TINY's closed form: the best rank-k solution of ``min ⟨Θ, S Θ⟩ − 2⟨N, Θ⟩``.

    With ``P = S^{-1/2} N = U diag(σ) Vᵀ``, the new neurons are
    ``α = S^{-1/2} U diag(√σ)`` and ``ω = diag(√σ) Vᵀ`` (σ above the thresholds), so that
    ``α ω`` is the optimum under rank ≤ k (Verbockhaven et al., TMLR 2024). Same numbers as
    gromo 0.1.0's ``compute_optimal_added_parameters``, which returns ``(α.T, ω.T, σ)``.

    Parameters
    ----------
    s : torch.Tensor
        S, shape (d, d), symmetric PSD
    n : torch.Tensor
        N, shape (d, t)
    numerical_threshold : float
        eigenvalues of S at or below it are dropped in ``S^{-1/2}``
    statistical_threshold : float
        singular values of P below it are dropped (the largest is always kept)
    max_neurons : int | None
        keep at most this many (k >= 1); None keeps every significant one

    Returns
    -------
    alpha : torch.Tensor
        shape (d, k)
    omega : torch.Tensor
        shape (k, t)
    sigma : torch.Tensor
        singular values, shape (k,), non-increasing
    """
    s = check_square("s", s)
    n = check_matrix("n", n, (s.shape[0], None))
    numerical_threshold = check_nonnegative("numerical_threshold", numerical_threshold)
    statistical_threshold = check_nonnegative("statistical_threshold", statistical_threshold)
    if max_neurons is not None:
        check_positive_int("max_neurons", max_neurons)
    return _optimal_added_parameters(s, n, numerical_threshold, statistical_threshold, max_neurons)


def _optimal_added_parameters(s, n, numerical_threshold, statistical_threshold, max_neurons):
    """:func:`optimal_added_parameters` without the checks."""
    work_dtype = _work_dtype(s)
    s_inv_sqrt = _sqrt_inverse_psd(s.to(work_dtype), numerical_threshold)
    p = s_inv_sqrt @ n.to(work_dtype)
    u, sigma, vh = torch.linalg.svd(p, full_matrices=False)
    keep = sigma >= min(statistical_threshold, float(sigma.max()))
    if max_neurons is not None:
        keep[max_neurons:] = False
    sigma, u, vh = sigma[keep], u[:, keep], vh[keep]
    root = sigma.sqrt()
    alpha = (s_inv_sqrt @ u) * root
    omega = root[:, None] * vh
    return alpha.to(n.dtype), omega.to(n.dtype), sigma.to(n.dtype)


def optimal_delta(
    inp: torch.Tensor, conv: torch.nn.Conv2d, v_goal: torch.Tensor, rtol: float | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Best least-squares update of one convolution's weights: ``w* = S⁻¹ M``.

    Minimizes ``‖conv_{ΔW, Δb}(inp) − v_goal‖²`` with ``S = Σ_i B_i B_iᵀ`` and
    ``M = Σ_i B_i v_iᵀ``, ``B = unfold_input(inp, conv)`` (a pseudo-inverse solve when S is
    singular).

    Parameters
    ----------
    inp : torch.Tensor
        input of ``conv``, shape (n, C_in, H_in, W_in)
    conv : torch.nn.Conv2d
        the convolution whose weights are updated
    v_goal : torch.Tensor
        desired change of its output, shape (n, C_out, H_out, W_out)
    rtol : float | None
        passed to :func:`solve_psd`

    Returns
    -------
    delta_weight : torch.Tensor
        shape of ``conv.weight``, (C_out, C_in, kh, kw)
    delta_bias : torch.Tensor | None
        shape (C_out,), None when ``conv`` has no bias
    """
    conv = check_conv("conv", conv)
    inp = check_image("inp", inp, conv.in_channels)
    expected = (inp.shape[0], conv.out_channels, *conv_output_size(tuple(inp.shape[-2:]), conv))
    v_goal = check_image("v_goal", v_goal)
    if tuple(v_goal.shape) != expected:
        raise ValueError(
            f"v_goal must have the shape of conv(inp), {expected}, got {tuple(v_goal.shape)}"
        )
    if rtol is not None:
        rtol = check_nonnegative("rtol", rtol)
    return _optimal_delta(inp, conv, v_goal, rtol)


def _optimal_delta(inp, conv, v_goal, rtol=None):
    """:func:`optimal_delta` without the checks."""
    with torch.no_grad():
        b = _unfold_input(inp, conv)  # (n, A, L)
        s = torch.einsum("ial, ibl -> ab", b, b)
        m = torch.einsum("ial, icl -> ac", b, v_goal.flatten(2))
        if rtol is None:
            rtol = s.shape[0] * torch.finfo(s.dtype).eps
        w = _solve_psd(s, m, rtol)  # (A, C_out)
    n_weight = conv.weight[0].numel()
    delta_weight = w[:n_weight].T.reshape(conv.weight.shape)
    delta_bias = w[n_weight] if conv.bias is not None else None
    return delta_weight, delta_bias


def project_goal(
    inp: torch.Tensor, conv: torch.nn.Conv2d, v_goal: torch.Tensor, rtol: float | None = None
) -> torch.Tensor:
    """``v_goal⊥ = v_goal − conv_{ΔW*}(inp)``: what the best update of conv leaves unexplained.

    TINY fits new neurons to this projection (notebook 06), so that they add expressivity
    instead of repeating a step on the existing weights.

    Parameters
    ----------
    inp : torch.Tensor
        input of ``conv`` (for conv2 of a pair: σ(conv1(x))), shape (n, C_in, H_in, W_in)
    conv : torch.nn.Conv2d
        the convolution
    v_goal : torch.Tensor
        shape (n, C_out, H_out, W_out)

    Returns
    -------
    torch.Tensor
        shape of ``v_goal``
    """
    delta_weight, delta_bias = optimal_delta(inp, conv, v_goal, rtol=rtol)
    return _apply_delta(inp, conv, v_goal, delta_weight, delta_bias)


def _apply_delta(inp, conv, v_goal, delta_weight, delta_bias):
    """``v_goal − conv_{ΔW, Δb}(inp)``."""
    with torch.no_grad():
        explained = F.conv2d(
            inp,
            delta_weight,
            delta_bias,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
        )
    return v_goal - explained
