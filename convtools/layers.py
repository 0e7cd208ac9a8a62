"""New layers from the optimal neurons, and the one-call ``grow``.

Layouts (tiny): ``alpha`` (A, k) — column j is the j-th new filter of conv1 flattened as
conv1's weight, its bias last when conv1 has one; ``omega`` (k, C[+1] E) — row j, column
``c E + e``, is the weight of new channel j in conv2's output channel c at kernel position e.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import (
    check_conv_pair,
    check_matrix,
    check_nonnegative,
    check_positive_int,
)
from .activation import ACTIVATION_ITER, _check_activation, _fit_through_activation
from .closed_form import _optimal_added_parameters, _work_dtype
from .exact import ALGORITHMS, _exact_neurons
from .geometry import kernel_positions
from .stats import _statistics, check_goal

__all__ = [
    "METHODS",
    "NeuronFit",
    "fit_neurons",
    "grow",
    "layers_from_factors",
    "layers_from_full_factors",
    "refactor_full",
    "relative_residual",
]

METHODS = ("tiny", "full", "exact")


def _input_width(conv1: torch.nn.Conv2d) -> int:
    return conv1.weight[0].numel() + (conv1.bias is not None)


def layers_from_factors(
    alpha: torch.Tensor, omega: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d
) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
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
    omega = check_matrix("omega", omega, (alpha.shape[1], conv2.out_channels * e))
    return _layers_from_factors(alpha, omega, conv1, conv2)


def _layers_from_factors(alpha, omega, conv1, conv2):
    """:func:`layers_from_factors` without the checks."""
    k = alpha.shape[1]
    kw = {"dtype": alpha.dtype, "device": alpha.device}
    new_conv1 = torch.nn.Conv2d(
        conv1.in_channels,
        k,
        conv1.kernel_size,
        stride=conv1.stride,
        padding=conv1.padding,
        dilation=conv1.dilation,
        bias=conv1.bias is not None,
        **kw,
    )
    new_conv2 = torch.nn.Conv2d(
        k,
        conv2.out_channels,
        conv2.kernel_size,
        stride=conv2.stride,
        padding=conv2.padding,
        dilation=conv2.dilation,
        bias=False,
        **kw,
    )
    n_weight = conv1.weight[0].numel()
    with torch.no_grad():
        new_conv1.weight.copy_(alpha[:n_weight].T.reshape(new_conv1.weight.shape))
        if conv1.bias is not None:
            new_conv1.bias.copy_(alpha[n_weight])
        new_conv2.weight.copy_(
            omega.reshape(k, conv2.out_channels, *conv2.kernel_size).permute(1, 0, 2, 3)
        )
    return new_conv1, new_conv2


def refactor_full(
    alpha_full: torch.Tensor, omega_full: torch.Tensor, e: int, k: int
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
    check_positive_int("e", e)
    if alpha_full.shape[0] % e:
        raise ValueError(f"alpha_full has {alpha_full.shape[0]} rows, not a multiple of E = {e}")
    return _refactor_full(alpha_full, omega_full, e, k)


def _refactor_full(alpha_full, omega_full, e, k):
    """:func:`refactor_full` without the checks."""
    a = alpha_full.shape[0] // e
    theta = (alpha_full @ omega_full).reshape(a, e, -1)
    theta_tiny = theta.permute(0, 2, 1).reshape(a, -1)  # (A) × (C E), as theta_to_tiny
    u, sigma, vh = torch.linalg.svd(theta_tiny, full_matrices=False)
    k = min(k, sigma.shape[0])
    root = sigma[:k].sqrt()
    return u[:, :k] * root, root[:, None] * vh[:k]


def layers_from_full_factors(
    alpha_full: torch.Tensor,
    omega_full: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    k: int,
) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
    """New layers from the full closed form, re-factorized to k channels (the seed's path).

    See :func:`refactor_full`; shapes: ``alpha_full`` (A E, k'), ``omega_full`` (k', C[+1]).
    """
    alpha, omega = refactor_full(alpha_full, omega_full, kernel_positions(conv2), k)
    return layers_from_factors(alpha, omega, conv1, conv2)


def _thresholds(
    s: torch.Tensor, numerical: float | None, statistical: float | None
) -> tuple[float, float]:
    """Default thresholds relative to the scale of S (statistics are sums, not means)."""
    if numerical is None:
        top = float(torch.linalg.eigvalsh(s.to(_work_dtype(s))).abs().max())
        numerical = top * s.shape[0] * torch.finfo(s.dtype).eps
    return numerical, 0.0 if statistical is None else statistical


@dataclass(frozen=True)
class NeuronFit:
    """New neurons between two convolutions, as found by :func:`fit_neurons`.

    Attributes
    ----------
    alpha : torch.Tensor
        shape (A, k), tiny layout (module docstring): the new filters of conv1
    omega : torch.Tensor
        shape (k, C[+1] E), tiny layout: the new input slices of conv2
    sigma : torch.Tensor
        singular values of the closed form the fit started from, non-increasing
    history : list[float] | None
        the exact solver's objective per iteration ("exact" only), non-increasing
    activation_history : list[float] | None
        with an activation: ``‖v_goal − conv2_ω(σ(conv1_α(x)))‖²`` per iteration of the fit
        through it, non-increasing
    """

    alpha: torch.Tensor
    omega: torch.Tensor
    sigma: torch.Tensor
    history: list[float] | None = None
    activation_history: list[float] | None = None

    @property
    def k(self) -> int:
        """Number of channels found."""
        return self.alpha.shape[1]


def fit_neurons(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    v_goal: torch.Tensor,
    k: int,
    method: str = "tiny",
    *,
    penalty: float = 0.0,
    algorithm: str = "auto",
    numerical_threshold: float | None = None,
    statistical_threshold: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    restarts: int = 0,
    generator: torch.Generator | None = None,
    activation=None,
    activation_iter: int = ACTIVATION_ITER,
) -> NeuronFit:
    """The k best new neurons between conv1 and conv2, as factors (α, ω).

    Fits ``conv2_ω(conv1_α(x)) ≈ v_goal`` in least squares, in the linear regime of the
    activation (σ(z) ≈ z, as TINY assumes).

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
        channels by SVD (the seed's path, kept to show why it fails); "exact": the optimum
        of the true objective by :func:`convtools.exact_neurons`, started from TINY's
        closed form (damped Gauss-Newton on small problems, variable projection with
        L-BFGS on large ones)
    penalty : float
        "exact" only: λ of the nuclear-norm penalty λ(‖α‖² + ‖ω‖²), default 0
    algorithm : str
        "exact" only: see :func:`convtools.exact.exact_neurons`
    numerical_threshold : float | None
        eigenvalue cut-off of S^{-1/2}; default ``λ_max(S) · d · eps`` of the dtype
    statistical_threshold : float | None
        singular-value cut-off; default 0 (every non-zero direction counts)
    max_iter, tol : int, float
        stopping rule of the exact solver
    restarts : int
        "exact" only: also run the solver from this many random starts (α drawn with
        ``generator``) and keep the best end point: the objective is not convex in (α, ω)
    generator : torch.Generator | None
        random source of the restarts (on the CPU)
    activation : callable | torch.nn.Module | None
        σ between the new layers (``torch.relu``, ``torch.nn.ReLU()``, ``torch.tanh``, ...).
        None (the default): the linear fit above. Given: the method's neurons are the start
        of a fit of ``conv2_ω(σ(conv1_α(x))) ≈ v_goal`` by L-BFGS over passes of x
        (:func:`convtools.activation.fit_through_activation`; per iteration one forward and
        backward pass of the two new k-channel convolutions over x); the collection's
        recommendation for ReLU networks, with the default ``method="tiny"`` (chapters 07
        and 08 measure it on held-out images)
    activation_iter : int
        at most this many L-BFGS iterations of the fit through the activation

    Returns
    -------
    NeuronFit
        k channels (fewer only when fewer directions are significant), in ``x``'s dtype
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_positive_int("k", k)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise ValueError(f"restarts must be an int >= 0, got {restarts!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    penalty = check_nonnegative("penalty", penalty)
    if penalty and method != "exact":
        raise ValueError(f"penalty applies to method='exact' only, got method={method!r}")
    for name, value in (
        ("numerical_threshold", numerical_threshold),
        ("statistical_threshold", statistical_threshold),
    ):
        if value is not None:
            check_nonnegative(name, value)
    check_positive_int("max_iter", max_iter)
    check_nonnegative("tol", tol)
    check_positive_int("activation_iter", activation_iter)
    if activation is not None:
        activation = _check_activation(activation)
    geometry = check_goal(x, conv1, conv2, v_goal)
    solver = {"penalty": penalty, "algorithm": algorithm, "max_iter": max_iter, "tol": tol}
    thresholds = (numerical_threshold, statistical_threshold)
    fit = _linear_fit(x, v_goal, k, method, geometry, thresholds, solver, restarts, generator)
    if activation is None:
        return fit
    alpha, omega, history = _fit_through_activation(
        x, conv1, conv2, v_goal, fit.alpha, fit.omega, activation, activation_iter
    )
    return NeuronFit(alpha, omega, fit.sigma, fit.history, history)


def _linear_fit(x, v_goal, k, method, geometry, thresholds, solver, restarts, generator):
    """The neurons of the linear regime, by ``method`` (arguments already checked).

    ``thresholds`` is (numerical, statistical), each None for the default; ``solver`` holds
    the exact solver's keyword arguments (penalty, algorithm, max_iter, tol).
    """
    if method == "full":
        s_full, n_full = _statistics(x, v_goal, geometry, "full")
        num, stat = _thresholds(s_full, *thresholds)
        alpha_full, omega_full, sigma = _optimal_added_parameters(s_full, n_full, num, stat, None)
        alpha, omega = _refactor_full(alpha_full, omega_full, geometry.e, k)
        return NeuronFit(alpha, omega, sigma)
    s, n = _statistics(x, v_goal, geometry, "tiny")
    num, stat = _thresholds(s, *thresholds)
    alpha, omega, sigma = _optimal_added_parameters(s, n, num, stat, k)
    if method == "tiny":
        return NeuronFit(alpha, omega, sigma)
    s_full, n_full = _statistics(x, v_goal, geometry, "full")
    v_sq = v_goal.detach().double().square().sum()
    options = {**solver, "v_sq_norm": v_sq}
    best = _exact_neurons(s_full, n_full, alpha, omega, **options)
    for _ in range(restarts):
        start = torch.randn(alpha.shape, dtype=torch.float64, generator=generator)
        start = start.to(dtype=alpha.dtype, device=alpha.device)
        candidate = _exact_neurons(s_full, n_full, start, torch.zeros_like(omega), **options)
        if candidate[2][-1] < best[2][-1]:
            best = candidate
    return NeuronFit(best[0], best[1], sigma, best[2])


def grow(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    v_goal: torch.Tensor,
    k: int,
    method: str = "tiny",
    **options,
) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
    """The k best new neurons between conv1 and conv2, as a pair of new layers.

    :func:`fit_neurons` (same arguments; ``options`` are its keyword arguments) followed by
    :func:`layers_from_factors`.

    Returns
    -------
    new_conv1 : torch.nn.Conv2d
        C[-1] -> k channels, conv1's geometry, with a bias iff conv1 has one
    new_conv2 : torch.nn.Conv2d
        k -> C[+1] channels, conv2's geometry, no bias; ``new_conv2(new_conv1(x))``
        approximates v_goal. Same dtype and device as ``x``.
    """
    fit = fit_neurons(x, conv1, conv2, v_goal, k, method, **options)
    return _layers_from_factors(fit.alpha, fit.omega, conv1, conv2)


def relative_residual(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """``‖prediction − target‖ / ‖target‖`` as a Python float (shapes must match)."""
    if not isinstance(prediction, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("prediction and target must be torch.Tensor")
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target "
            f"{tuple(target.shape)} must have the same shape"
        )
    with torch.no_grad():
        return float((prediction - target).norm() / target.norm())
