"""New layers from the optimal neurons, and the one-call ``grow``.

Layouts (tiny): ``alpha`` (A, k) — column j is the j-th new filter of conv1 flattened as
conv1's weight, its bias last when conv1 has one; ``omega`` (k, C[+1] E) — row j, column
``c E + e``, is the weight of new channel j in conv2's output channel c at kernel position e.
"""

from __future__ import annotations

import torch

from ._checks import check_conv_pair, check_image, check_matrix, check_positive_int
from .geometry import kernel_positions
from .solvers import exact_neurons, optimal_added_parameters
from .statistics import statistics, theta_from_tiny, theta_to_tiny

__all__ = [
    "METHODS",
    "grow",
    "layers_from_factors",
    "layers_from_full_factors",
    "refactor_full",
    "relative_residual",
    "theta_of_factors",
]

METHODS = ("tiny", "full", "exact")


def _input_width(conv1: torch.nn.Conv2d) -> int:
    return conv1.weight[0].numel() + (conv1.bias is not None)


def layers_from_factors(alpha: torch.Tensor, omega: torch.Tensor, conv1: torch.nn.Conv2d,
                        conv2: torch.nn.Conv2d) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
    """Build the k new neurons as a pair of convolutions.

    Parameters
    ----------
    alpha : torch.Tensor
        shape (A, k), tiny layout (module docstring)
    omega : torch.Tensor
        shape (k, C[+1] E), tiny layout
    conv1, conv2 : torch.nn.Conv2d
        the existing pair; the new layers copy their kernel size, stride, padding and dilation

    Returns
    -------
    new_conv1 : torch.nn.Conv2d
        C[-1] -> k channels, with a bias iff conv1 has one
    new_conv2 : torch.nn.Conv2d
        k -> C[+1] channels, no bias; ``new_conv2(new_conv1(x))`` is the neurons' contribution
    """
    conv1, conv2 = check_conv_pair(conv1, conv2)
    a, e = _input_width(conv1), kernel_positions(conv2)
    alpha = check_matrix("alpha", alpha, (a, None))
    k = alpha.shape[1]
    omega = check_matrix("omega", omega, (k, conv2.out_channels * e))
    kw = {"dtype": alpha.dtype, "device": alpha.device}
    new_conv1 = torch.nn.Conv2d(
        conv1.in_channels, k, conv1.kernel_size, stride=conv1.stride, padding=conv1.padding,
        dilation=conv1.dilation, bias=conv1.bias is not None, **kw)
    new_conv2 = torch.nn.Conv2d(
        k, conv2.out_channels, conv2.kernel_size, stride=conv2.stride, padding=conv2.padding,
        dilation=conv2.dilation, bias=False, **kw)
    n_weight = conv1.weight[0].numel()
    with torch.no_grad():
        new_conv1.weight.copy_(alpha[:n_weight].T.reshape(new_conv1.weight.shape))
        if conv1.bias is not None:
            new_conv1.bias.copy_(alpha[n_weight])
        new_conv2.weight.copy_(
            omega.reshape(k, conv2.out_channels, *conv2.kernel_size).permute(1, 0, 2, 3))
    return new_conv1, new_conv2


def refactor_full(alpha_full: torch.Tensor, omega_full: torch.Tensor, e: int, k: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-factorize the full closed form to k channels by a plain SVD (the seed's path).

    ``Θ = α_full ω_full`` (A E, C) has rank ≤ k' in its (A E) × C reading; channels count
    the rank of the (A) × (C E) reading, so Θ is re-read that way and truncated to its
    k leading singular triplets (notebook 04). Kept to show why this fails.

    Parameters
    ----------
    alpha_full : torch.Tensor
        shape (A E, k')
    omega_full : torch.Tensor
        shape (k', C)
    e : int
        kernel positions E of conv2
    k : int
        number of channels wanted

    Returns
    -------
    alpha : torch.Tensor
        shape (A, k'') with k'' = min(k, A, C E), tiny layout
    omega : torch.Tensor
        shape (k'', C E)
    """
    alpha_full = check_matrix("alpha_full", alpha_full)
    omega_full = check_matrix("omega_full", omega_full, (alpha_full.shape[1], None))
    check_positive_int("k", k)
    if alpha_full.shape[0] % e:
        raise ValueError(f"alpha_full has {alpha_full.shape[0]} rows, not a multiple of "
                         f"E = {e}")
    a = alpha_full.shape[0] // e
    theta = (alpha_full @ omega_full).reshape(a, e, -1)
    u, sigma, vh = torch.linalg.svd(theta_to_tiny(theta), full_matrices=False)
    k = min(k, sigma.shape[0])
    root = sigma[:k].sqrt()
    return u[:, :k] * root, root[:, None] * vh[:k]


def layers_from_full_factors(alpha_full: torch.Tensor, omega_full: torch.Tensor,
                             conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d, k: int
                             ) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
    """New layers from the full closed form, re-factorized to k channels (the seed's path).

    See :func:`refactor_full`; shapes: ``alpha_full`` (A E, k'), ``omega_full`` (k', C[+1]).
    """
    alpha, omega = refactor_full(alpha_full, omega_full, kernel_positions(conv2), k)
    return layers_from_factors(alpha, omega, conv1, conv2)


def _thresholds(s: torch.Tensor, numerical: float | None, statistical: float | None
                ) -> tuple[float, float]:
    """Default thresholds relative to the scale of S (statistics are sums, not means)."""
    if numerical is None:
        top = float(torch.linalg.eigvalsh(s.to(torch.float64 if s.device.type != "mps"
                                                else s.dtype)).abs().max())
        eps = torch.finfo(s.dtype).eps
        numerical = top * s.shape[0] * eps
    if statistical is None:
        statistical = 0.0
    return numerical, statistical


def grow(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    v_goal: torch.Tensor,
    k: int,
    method: str = "tiny",
    return_info: bool = False,
    numerical_threshold: float | None = None,
    statistical_threshold: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    restarts: int = 0,
    generator: torch.Generator | None = None,
):
    """The k best new neurons between conv1 and conv2, as a pair of new layers.

    Fits ``new_conv2(new_conv1(x)) ≈ v_goal`` in least squares (the linear regime of the
    activation, σ'(0) = 1, as TINY assumes).

    Parameters
    ----------
    x : torch.Tensor
        input of conv1, shape (n, C[-1], H[-1], W[-1])
    conv1, conv2 : torch.nn.Conv2d
        the existing pair (only their geometry and conv1's bias flag are used)
    v_goal : torch.Tensor
        desired update of conv2's output, shape (n, C[+1], H[+1], W[+1])
    k : int
        number of new channels (>= 1)
    method : {"tiny", "full", "exact"}
        "tiny": TINY's closed form on (S_tiny, N_tiny), exact for the true objective only
        when conv2 is 1×1; "full": the closed form on (S_full, N_full) re-factorized to k
        channels by SVD (the seed's path, kept to show why it fails); "exact": alternating
        least squares on the true objective started from the tiny solution
    return_info : bool
        also return a dict with "k" (channels built), "sigma" (singular values of the
        closed form used), "history" (objective per sweep for "exact", else None)
    numerical_threshold : float | None
        eigenvalue cut-off of S^{-1/2}; default ``λ_max(S) · d · eps`` of the dtype
    statistical_threshold : float | None
        singular-value cut-off; default 0 (every non-zero direction counts)
    max_iter, tol
        stopping rule of the exact solver (see :func:`convtools.exact_neurons`)
    restarts : int
        "exact" only: also run the solver from this many random starts (α drawn with
        ``generator``) and keep the best end point. The objective is not convex in (α, ω):
        from TINY's start the solver can stop in a local minimum, and a few restarts
        usually escape it. Default 0: TINY's start only
    generator : torch.Generator | None
        random source of the restarts (on the CPU), for reproducible results

    Returns
    -------
    new_conv1, new_conv2 : torch.nn.Conv2d
        k channels (fewer only when fewer directions are significant); new_conv1 has a
        bias iff conv1 has one, new_conv2 has none. Same dtype and device as ``x``.
    info : dict
        only with ``return_info=True``
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_positive_int("k", k)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise ValueError(f"restarts must be an int >= 0, got {restarts!r}")
    conv1, conv2 = check_conv_pair(conv1, conv2)
    e = kernel_positions(conv2)
    history = None
    if method in ("tiny", "exact"):
        s, n = statistics(x, conv1, conv2, v_goal, kind="tiny")
        num, stat = _thresholds(s, numerical_threshold, statistical_threshold)
        alpha, omega, sigma = optimal_added_parameters(s, n, num, stat, max_neurons=k)
        if method == "exact":
            s_full, n_full = statistics(x, conv1, conv2, v_goal, kind="full")
            v_sq = check_image("v_goal", v_goal).detach().double().square().sum()
            alpha, omega, history = exact_neurons(
                s_full, n_full, alpha, omega, max_iter=max_iter, tol=tol, v_sq_norm=v_sq)
            for _ in range(restarts):
                start = torch.randn(alpha.shape, dtype=torch.float64, generator=generator)
                start = start.to(dtype=alpha.dtype, device=alpha.device)
                candidate = exact_neurons(s_full, n_full, start, torch.zeros_like(omega),
                                          max_iter=max_iter, tol=tol, v_sq_norm=v_sq)
                if candidate[2][-1] < history[-1]:
                    alpha, omega, history = candidate
    else:
        s_full, n_full = statistics(x, conv1, conv2, v_goal, kind="full")
        num, stat = _thresholds(s_full, numerical_threshold, statistical_threshold)
        alpha_full, omega_full, sigma = optimal_added_parameters(s_full, n_full, num, stat)
        alpha, omega = refactor_full(alpha_full, omega_full, e, k)
    new_conv1, new_conv2 = layers_from_factors(alpha, omega, conv1, conv2)
    if return_info:
        return new_conv1, new_conv2, {"k": alpha.shape[1], "sigma": sigma, "history": history}
    return new_conv1, new_conv2


def relative_residual(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """``‖prediction − target‖ / ‖target‖`` as a Python float (shapes must match)."""
    if not isinstance(prediction, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("prediction and target must be torch.Tensor")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target "
                         f"{tuple(target.shape)} must have the same shape")
    with torch.no_grad():
        return float((prediction - target).norm() / target.norm())


def theta_of_factors(alpha: torch.Tensor, omega: torch.Tensor, e: int) -> torch.Tensor:
    """Θ (A, E, C) of the neurons ``(alpha (A, k), omega (k, C E))``."""
    return theta_from_tiny(check_matrix("alpha", alpha) @ check_matrix("omega", omega), e)
