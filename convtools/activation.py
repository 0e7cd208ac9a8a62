r"""New neurons through the activation: their contribution, and a fit through σ.

Every solver of :mod:`convtools.closed_form` and :mod:`convtools.exact` fits the new
neurons in the linear regime of the activation (σ(z) ≈ z). In a network the k new
channels contribute

.. math::

    D(α, ω) = \mathrm{conv2}_ω\big(σ(\mathrm{conv1}_α(x))\big),

and with a ReLU no amplitude makes that linear (ReLU is positively homogeneous). This module
holds the pieces that act on D itself:

- :func:`fit_through_activation`: minimize ``‖v_goal − D(α, ω)‖²`` over (α, ω) by L-BFGS
  from a start (e.g. a closed form). Unlike the linear solvers it needs passes over x:
  one iteration costs one forward and one backward pass of the two small convolutions
  (C[-1] → k → C[+1]) over x per function evaluation of the strong-Wolfe line search
  (usually one). Memory: x, v_goal, and the intermediate (n, k, H, W) maps.
- :func:`contribution`: D itself.

The per-neuron pieces (sign choice by the first-order gain, ± pairs, the cancellation ratio)
are in :mod:`convtools.signs`; the scale and held-out choice of λ of the regularized exact
solver in :mod:`convtools.penalty`.

Layouts as everywhere (tiny): ``alpha`` (A, k), column j = new filter j of conv1 flattened
as ``conv1.weight[j]``, its bias last when conv1 has one; ``omega`` (k, C[+1] E), row j,
column ``c E + e``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._checks import check_matrix, check_nonnegative, check_positive_int
from .geometry import kernel_positions
from .stats import check_goal

__all__ = [
    "ACTIVATION_ITER",
    "contribution",
    "fit_through_activation",
]

ACTIVATION_ITER = 40
"""Default number of L-BFGS iterations of :func:`fit_through_activation`."""


# --------------------------------------------------------------------------- helpers


def _check_activation(activation: object) -> Callable[[torch.Tensor], torch.Tensor]:
    if activation is None:
        return _identity
    if not callable(activation):
        raise TypeError(
            "activation must be a callable or a torch.nn.Module (e.g. torch.relu,"
            f" torch.nn.ReLU()), got {type(activation).__name__}"
        )
    return activation


def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


def _check_factors(
    x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d, alpha: object, omega: object
) -> tuple[torch.Tensor, torch.Tensor]:
    a = conv1.weight[0].numel() + (conv1.bias is not None)
    alpha = check_matrix("alpha", alpha, (a, None))
    omega = check_matrix(
        "omega", omega, (alpha.shape[1], conv2.out_channels * kernel_positions(conv2))
    )
    for name, t in (("alpha", alpha), ("omega", omega)):
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(
                f"{name} ({t.dtype}, {t.device}) must have the dtype and device "
                f"of x ({x.dtype}, {x.device})"
            )
    return alpha, omega


def _weights(
    alpha: torch.Tensor, omega: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(weight1 (k, C[-1], kh, kw), bias1 (k,) or None, weight2 (C[+1], k, kh2, kw2))."""
    k = alpha.shape[1]
    n_weight = conv1.weight[0].numel()
    w1 = alpha[:n_weight].T.reshape(k, *conv1.weight.shape[1:])
    b1 = alpha[n_weight] if conv1.bias is not None else None
    w2 = omega.reshape(k, conv2.out_channels, *conv2.kernel_size).transpose(0, 1)
    return w1, b1, w2


def _conv1(x, w1, b1, conv1):
    return F.conv2d(x, w1, b1, conv1.stride, conv1.padding, conv1.dilation)


def _conv2(h, w2, conv2):
    return F.conv2d(h, w2, None, conv2.stride, conv2.padding, conv2.dilation)


def _contribution(x, conv1, conv2, alpha, omega, activation):
    """``conv2_ω(σ(conv1_α(x)))`` (no checks; activation None = identity)."""
    w1, b1, w2 = _weights(alpha, omega, conv1, conv2)
    h = _conv1(x, w1, b1, conv1)
    return _conv2(h if activation is None else activation(h), w2, conv2)


def contribution(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    alpha: torch.Tensor,
    omega: torch.Tensor,
    activation: Callable | None = None,
) -> torch.Tensor:
    """The new neurons' contribution ``D = conv2_ω(σ(conv1_α(x)))`` to conv2's output.

    Parameters
    ----------
    x : torch.Tensor
        input of conv1, shape (n, C[-1], H[-1], W[-1])
    conv1, conv2 : torch.nn.Conv2d
        the existing pair (geometry and conv1's bias flag)
    alpha : torch.Tensor
        shape (A, k), tiny layout
    omega : torch.Tensor
        shape (k, C[+1] E), tiny layout
    activation : callable | None
        σ; None is the identity (the linear regime)

    Returns
    -------
    torch.Tensor
        shape (n, C[+1], H[+1], W[+1])
    """
    x, conv1, conv2 = _check_pair_input(x, conv1, conv2)
    alpha, omega = _check_factors(x, conv1, conv2, alpha, omega)
    activation = None if activation is None else _check_activation(activation)
    return _contribution(x, conv1, conv2, alpha, omega, activation)


def _check_pair_input(x, conv1, conv2):
    from ._checks import check_conv_pair, check_image

    conv1, conv2 = check_conv_pair(conv1, conv2)
    x = check_image("x", x, conv1.in_channels)
    return x, conv1, conv2


def _is_positively_homogeneous(activation, dtype, device) -> bool:
    """σ(c z) = c σ(z) for c > 0, checked on a probe (ReLU, leaky ReLU, identity)."""
    probe = torch.linspace(-3, 3, 13, dtype=dtype, device=device)
    with torch.no_grad():
        base = activation(probe)
        return all(
            bool(torch.allclose(activation(c * probe), c * base, rtol=1e-5, atol=1e-6))
            for c in (0.5, 2.0)
        )


def _balance(alpha, omega):
    """Rescale each neuron so that ‖α_j‖ = ‖ω_j‖ (unchanged D for homogeneous σ)."""
    a_norm, o_norm = alpha.norm(dim=0), omega.norm(dim=1)
    ok = (a_norm > 0) & (o_norm > 0)
    c = torch.where(ok, (o_norm / torch.where(ok, a_norm, 1)).sqrt(), torch.ones_like(a_norm))
    return alpha * c, omega / c[:, None]


# --------------------------------------------------------------------------- the fit


def fit_through_activation(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    v_goal: torch.Tensor,
    alpha: torch.Tensor,
    omega: torch.Tensor,
    activation: Callable | None,
    max_iter: int = ACTIVATION_ITER,
    tol: float = 1e-9,
    history_size: int = 20,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    r"""New neurons fitted *through* the activation, from a start (α, ω).

    Minimizes

    .. math::

        f(α, ω) = \big\|v_{goal} - \mathrm{conv2}_ω(σ(\mathrm{conv1}_α(x)))\big\|^2

    over α (A, k) and ω (k, C[+1] E) with ``torch.optim.LBFGS`` (strong-Wolfe line search,
    ``history_size`` curvature pairs, at most ``max_iter`` iterations and ``3 max_iter``
    evaluations), on full passes over x. Inside the optimizer the objective is
    ``(‖D‖² − 2⟨v_goal, D⟩) / ‖v_goal‖²`` (f without its constant, so that float32 resolves
    fits that explain a small share of ‖v_goal‖², and scale-free tolerances); the history
    holds f itself.

    When σ is positively homogeneous (ReLU, leaky ReLU, identity: checked on a probe) each
    neuron is first balanced, ``‖α_j‖ = ‖ω_j‖``, which leaves D unchanged and conditions the
    problem; otherwise the start is used as given.

    Cost per iteration: one forward and one backward pass of the two convolutions
    C[-1] → k → C[+1] over x for each evaluation of the line search (usually one); O(n k
    (C[-1] kh kw + C[+1] kh2 kw2) H W) operations each. Memory: the (n, k, H, W)
    intermediate maps.

    Parameters
    ----------
    x : torch.Tensor
        input of conv1, shape (n, C[-1], H[-1], W[-1]); the fit runs in its dtype and device
    conv1, conv2 : torch.nn.Conv2d
        the existing pair (geometry and conv1's bias flag only)
    v_goal : torch.Tensor
        desired change of conv2's output, shape (n, C[+1], H[+1], W[+1])
    alpha : torch.Tensor
        start, shape (A, k), tiny layout (bias row last when conv1 has a bias)
    omega : torch.Tensor
        start, shape (k, C[+1] E), tiny layout
    activation : callable | None
        σ, e.g. ``torch.relu``, ``torch.nn.ReLU()``, ``torch.tanh``; None = identity
    max_iter : int
        at most this many L-BFGS iterations (default :data:`ACTIVATION_ITER`)
    tol : float
        stop when an iteration lowers f by at most ``tol · ‖v_goal‖²``
    history_size : int
        L-BFGS memory

    Returns
    -------
    alpha : torch.Tensor
        shape (A, k), the best point found
    omega : torch.Tensor
        shape (k, C[+1] E)
    history : list[float]
        f at the (balanced) start and at each evaluated point that improved on the best so
        far (the line search's accepted points), non-increasing
    """
    check_goal(x, conv1, conv2, v_goal)
    alpha, omega = _check_factors(x, conv1, conv2, alpha, omega)
    activation = _check_activation(activation)
    check_positive_int("max_iter", max_iter)
    tol = check_nonnegative("tol", tol)
    check_positive_int("history_size", history_size)
    return _fit_through_activation(
        x, conv1, conv2, v_goal, alpha, omega, activation, max_iter, tol, history_size
    )


def _reduced(x, conv1, conv2, v_goal, alpha, omega, activation):
    """``f − ‖v‖² = ‖D‖² − 2⟨v, D⟩``, without the constant ‖v‖².

    Without the constant float32 keeps the digits of a fit that explains a small share of
    ‖v‖².
    """
    d = _contribution(x, conv1, conv2, alpha, omega, activation)
    return d.square().sum() - 2 * (v_goal * d).sum()


def _fit_through_activation(
    x,
    conv1,
    conv2,
    v_goal,
    alpha,
    omega,
    activation,
    max_iter=ACTIVATION_ITER,
    tol=1e-9,
    history_size=20,
):
    """:func:`fit_through_activation` without the checks (activation None = identity)."""
    activation = _identity if activation is None else activation
    x, v_goal = x.detach(), v_goal.detach()
    alpha, omega = alpha.detach().to(x.dtype), omega.detach().to(x.dtype)
    if _is_positively_homogeneous(activation, x.dtype, x.device):
        alpha, omega = _balance(alpha, omega)
    v_sq = float(v_goal.double().square().sum())
    scale = v_sq if v_sq > 0 else 1.0
    if v_sq == 0 or alpha.shape[1] == 0:
        with torch.no_grad():
            return (
                alpha,
                omega,
                [v_sq + float(_reduced(x, conv1, conv2, v_goal, alpha, omega, activation))],
            )
    a_var = alpha.clone().contiguous().requires_grad_(True)
    o_var = omega.clone().contiguous().requires_grad_(True)
    # One call of step() runs all the iterations: every evaluation is also a point, so the
    # closure keeps the best one and the history of improvements (one pass over x per
    # evaluation; splitting the run into one step() per iteration would add an evaluation).
    optimizer = torch.optim.LBFGS(
        [a_var, o_var],
        lr=1,
        max_iter=max_iter,
        max_eval=3 * max_iter,
        tolerance_grad=1e-12,
        tolerance_change=tol,
        history_size=history_size,
        line_search_fn="strong_wolfe",
    )
    history: list[float] = []
    best = {}

    def closure():
        optimizer.zero_grad()
        loss = _reduced(x, conv1, conv2, v_goal, a_var, o_var, activation) / scale
        loss.backward()
        current = v_sq + float(loss.detach()) * scale
        if not history or (math.isfinite(current) and current < history[-1]):
            history.append(current)
            best["point"] = (a_var.detach().clone(), o_var.detach().clone())
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return best["point"][0], best["point"][1], history
