r"""New neurons through the activation: fit, sign choice, ± pairs, cancellation, λ rule.

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
  (usually one, at most ``max_eval``), plus one forward pass when the accepted point was not
  the last one evaluated. Memory: x, v_goal, and the intermediate (n, k, H, W) maps.
- :func:`choose_signs`: the linear objective is invariant under (α_j, ω_j) → (−α_j, −ω_j),
  a ReLU network is not; keep for each neuron the sign with the larger first-order gain
  ``⟨v_goal, D_j⟩`` through the activation.
- :func:`plus_minus_pairs`: ``σ(z) − σ(−z) = z`` for the ReLU, so the 2k channels
  ``[α, −α]``, ``[ω; −ω]`` contribute through the ReLU exactly the linear contribution of
  (α, ω).
- :func:`cancellation_ratio`: ``Σ_j ‖D_j‖ / ‖Σ_j D_j‖`` (1 when the channels do not cancel).
- :func:`penalty_max` and :func:`select_penalty`: the scale of λ of the nuclear-norm
  regularized exact solver (:func:`convtools.exact.exact_neurons` with ``penalty=λ``) and its
  choice on held-out statistics.

Layouts as everywhere (tiny): ``alpha`` (A, k), column j = new filter j of conv1 flattened
as ``conv1.weight[j]``, its bias last when conv1 has one; ``omega`` (k, C[+1] E), row j,
column ``c E + e``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ._checks import check_matrix, check_nonnegative, check_positive_int
from .exact import _exact_neurons
from .geometry import kernel_positions
from .layouts import n_full_to_tiny, theta_of_factors
from .stats import check_goal

__all__ = [
    "ACTIVATION_ITER",
    "PENALTY_FRACTIONS",
    "cancellation_ratio",
    "choose_signs",
    "contribution",
    "first_order_gains",
    "fit_through_activation",
    "penalty_max",
    "plus_minus_pairs",
    "select_penalty",
]

ACTIVATION_ITER = 40
"""Default number of L-BFGS iterations of :func:`fit_through_activation`."""

PENALTY_FRACTIONS = (0.0, 0.01, 0.03, 0.1, 0.3)
"""Default path of ρ = λ / λ_max searched by :func:`select_penalty`."""


# --------------------------------------------------------------------------- helpers


def _check_activation(activation: object) -> Callable[[torch.Tensor], torch.Tensor]:
    if activation is None:
        return _identity
    if not callable(activation):
        raise TypeError("activation must be a callable or a torch.nn.Module (e.g. torch.relu,"
                        f" torch.nn.ReLU()), got {type(activation).__name__}")
    return activation


def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


def _check_factors(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
                   alpha: object, omega: object) -> tuple[torch.Tensor, torch.Tensor]:
    a = conv1.weight[0].numel() + (conv1.bias is not None)
    alpha = check_matrix("alpha", alpha, (a, None))
    omega = check_matrix("omega", omega, (alpha.shape[1], conv2.out_channels
                                          * kernel_positions(conv2)))
    for name, t in (("alpha", alpha), ("omega", omega)):
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"{name} ({t.dtype}, {t.device}) must have the dtype and device "
                            f"of x ({x.dtype}, {x.device})")
    return alpha, omega


def _weights(alpha: torch.Tensor, omega: torch.Tensor, conv1: torch.nn.Conv2d,
             conv2: torch.nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
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


def contribution(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
                 alpha: torch.Tensor, omega: torch.Tensor,
                 activation: Callable | None = None) -> torch.Tensor:
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
        return all(bool(torch.allclose(activation(c * probe), c * base, rtol=1e-5, atol=1e-6))
                   for c in (0.5, 2.0))


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
    ``history_size`` curvature pairs), one L-BFGS iteration per accepted step, on full passes
    over x. The objective is divided by ``‖v_goal‖²`` inside the optimizer (its tolerances
    are then scale-free); the history holds f itself.

    When σ is positively homogeneous (ReLU, leaky ReLU, identity: checked on a probe) each
    neuron is first balanced, ``‖α_j‖ = ‖ω_j‖``, which leaves D unchanged and conditions the
    problem; otherwise the start is used as given.

    Cost per iteration: one forward and one backward pass of the two convolutions
    C[-1] → k → C[+1] over x for each evaluation of the line search (usually one), plus one
    forward pass when the accepted point is not the last one evaluated; O(n k (C[-1] kh kw
    + C[+1] kh2 kw2) H W) operations each. Memory: the (n, k, H, W) intermediate maps.

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
        f at the (balanced) start and after each accepted iteration, non-increasing
    """
    check_goal(x, conv1, conv2, v_goal)
    alpha, omega = _check_factors(x, conv1, conv2, alpha, omega)
    activation = _check_activation(activation)
    check_positive_int("max_iter", max_iter)
    tol = check_nonnegative("tol", tol)
    check_positive_int("history_size", history_size)
    return _fit_through_activation(x, conv1, conv2, v_goal, alpha, omega, activation,
                                   max_iter, tol, history_size)


def _fit_through_activation(x, conv1, conv2, v_goal, alpha, omega, activation,
                            max_iter=ACTIVATION_ITER, tol=1e-9, history_size=20):
    """:func:`fit_through_activation` without the checks (activation None = identity)."""
    activation = _identity if activation is None else activation
    x, v_goal = x.detach(), v_goal.detach()
    alpha, omega = alpha.detach().to(x.dtype), omega.detach().to(x.dtype)
    if _is_positively_homogeneous(activation, x.dtype, x.device):
        alpha, omega = _balance(alpha, omega)
    v_sq = float(v_goal.double().square().sum())
    scale = v_sq if v_sq > 0 else 1.0
    a_var = alpha.clone().contiguous().requires_grad_(True)
    o_var = omega.clone().contiguous().requires_grad_(True)
    last = {}

    def value(a, o):
        d = _contribution(x, conv1, conv2, a, o, activation)
        return (v_goal - d).square().sum()

    def closure():
        optimizer.zero_grad()
        loss = value(a_var, o_var) / scale
        loss.backward()
        last["point"] = (a_var.detach().clone(), o_var.detach().clone())
        last["value"] = float(loss.detach()) * scale
        return loss

    with torch.no_grad():
        start = float(value(alpha, omega))
    history = [start]
    best = (alpha.clone(), omega.clone())
    if v_sq == 0 or alpha.shape[1] == 0:
        return best[0], best[1], history
    optimizer = torch.optim.LBFGS([a_var, o_var], lr=1, max_iter=1, max_eval=10,
                                  tolerance_grad=1e-12, tolerance_change=1e-14,
                                  history_size=history_size, line_search_fn="strong_wolfe")
    with torch.enable_grad():
        for _ in range(max_iter):
            optimizer.step(closure)
            a_now, o_now = a_var.detach(), o_var.detach()
            point = last.get("point")
            if point is not None and torch.equal(point[0], a_now) and torch.equal(point[1], o_now):
                current = last["value"]
            else:
                with torch.no_grad():
                    current = float(value(a_now, o_now))
            if not math.isfinite(current) or current > history[-1]:
                break  # not accepted: keep the best point
            improvement = history[-1] - current
            history.append(current)
            best = (a_now.clone(), o_now.clone())
            if improvement <= tol * scale:
                break
    return best[0], best[1], history


# --------------------------------------------------------------------------- signs, pairs


def _first_order_gains(x, conv1, conv2, v_goal, alpha, omega, activation):
    """(gain of (α_j, ω_j), gain of (−α_j, −ω_j)), each of shape (k,)."""
    activation = _identity if activation is None else activation
    w1, b1, w2 = _weights(alpha, omega, conv1, conv2)
    with torch.no_grad():
        h = _conv1(x, w1, b1, conv1)
        # G = conv2_ω^T(v): ⟨v, conv2_ω(u)⟩ = ⟨G, u⟩ for every u, channel by channel
        g = torch.nn.grad.conv2d_input(h.shape, w2, v_goal, conv2.stride, conv2.padding,
                                       conv2.dilation)
        plus = (g * activation(h)).sum(dim=(0, 2, 3))
        minus = -(g * activation(-h)).sum(dim=(0, 2, 3))
    return plus, minus


def first_order_gains(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
                      v_goal: torch.Tensor, alpha: torch.Tensor, omega: torch.Tensor,
                      activation: Callable | None) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order gains ``⟨v_goal, D_j⟩`` of each neuron and of its negative.

    ``D_j = conv2_{ω_j}(σ(conv1_{α_j}(x)))`` is neuron j's contribution; the negative neuron
    is (−α_j, −ω_j). For the identity both gains are equal (the linear objective is sign
    invariant); through a ReLU they are not. Cost: one forward pass of conv1 and one
    transposed convolution of v_goal.

    Returns
    -------
    plus, minus : torch.Tensor
        shape (k,) each: ``⟨v, D_j(α_j, ω_j)⟩`` and ``⟨v, D_j(−α_j, −ω_j)⟩``
    """
    check_goal(x, conv1, conv2, v_goal)
    alpha, omega = _check_factors(x, conv1, conv2, alpha, omega)
    activation = _check_activation(activation)
    return _first_order_gains(x, conv1, conv2, v_goal, alpha, omega, activation)


def choose_signs(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
                 v_goal: torch.Tensor, alpha: torch.Tensor, omega: torch.Tensor,
                 activation: Callable | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each neuron, (α_j, ω_j) → (−α_j, −ω_j), when that raises its first-order gain.

    The gain of neuron j through σ is ``⟨v_goal, conv2_{ω_j}(σ(conv1_{α_j}(x)))⟩``, the
    slope at zero of the loss decrease along its amplitude (see :func:`first_order_gains`).
    The linear objective cannot tell the two signs apart; a ReLU network can. Ties keep the
    given sign, so the gain of every neuron never decreases.

    Parameters
    ----------
    x, conv1, conv2, v_goal : as in :func:`fit_through_activation`
    alpha : torch.Tensor
        shape (A, k), tiny layout
    omega : torch.Tensor
        shape (k, C[+1] E), tiny layout
    activation : callable | None
        σ; None = identity (then nothing is flipped)

    Returns
    -------
    alpha, omega : torch.Tensor
        same shapes, with some columns of alpha and the matching rows of omega negated
    """
    check_goal(x, conv1, conv2, v_goal)
    alpha, omega = _check_factors(x, conv1, conv2, alpha, omega)
    activation = _check_activation(activation)
    return _choose_signs(x, conv1, conv2, v_goal, alpha, omega, activation)


def _choose_signs(x, conv1, conv2, v_goal, alpha, omega, activation):
    """:func:`choose_signs` without the checks."""
    plus, minus = _first_order_gains(x, conv1, conv2, v_goal, alpha, omega, activation)
    sign = torch.where(minus > plus, -1.0, 1.0).to(alpha.dtype)
    return alpha * sign, omega * sign[:, None]


def plus_minus_pairs(alpha: torch.Tensor, omega: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Each neuron and its negative twin: 2k channels, exactly linear through a ReLU.

    With ``z = conv1_α(x)`` (bias included), ``σ(z) − σ(−z) = z`` for σ = ReLU, so

    .. math::

        \mathrm{conv2}_{[ω; −ω]}\big(σ(\mathrm{conv1}_{[α, −α]}(x))\big)
        = \mathrm{conv2}_ω(\mathrm{conv1}_α(x)).

    Parameters
    ----------
    alpha : torch.Tensor
        shape (A, k), tiny layout
    omega : torch.Tensor
        shape (k, C[+1] E)

    Returns
    -------
    alpha2 : torch.Tensor
        shape (A, 2k): ``[α, −α]``
    omega2 : torch.Tensor
        shape (2k, C[+1] E): ``[ω; −ω]``
    """
    alpha = check_matrix("alpha", alpha)
    omega = check_matrix("omega", omega, (alpha.shape[1], None))
    return _plus_minus_pairs(alpha, omega)


def _plus_minus_pairs(alpha, omega):
    """:func:`plus_minus_pairs` without the checks."""
    return torch.cat([alpha, -alpha], dim=1), torch.cat([omega, -omega], dim=0)


# --------------------------------------------------------------------------- cancellation


def cancellation_ratio(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
                       alpha: torch.Tensor, omega: torch.Tensor,
                       activation: Callable | None = None) -> float:
    """``Σ_j ‖D_j‖ / ‖Σ_j D_j‖``: how much the channels' contributions cancel.

    ``D_j = conv2_{ω_j}(σ(conv1_{α_j}(x)))``; with ``activation=None`` this is ``X Θ_j``, the
    linear contribution of channel j (Θ_j = α_j ω_j). The ratio is 1 when all channels
    point the same way (or k = 1), and large when large contributions cancel in the sum,
    which a ReLU then no longer does. Infinite when the sum vanishes but not its terms.

    Parameters
    ----------
    x, conv1, conv2, alpha, omega : as in :func:`contribution`
    activation : callable | None
        σ; None (default) for the linear contributions X Θ_j

    Returns
    -------
    float
        ≥ 1 (NaN when every channel contributes zero)
    """
    x, conv1, conv2 = _check_pair_input(x, conv1, conv2)
    alpha, omega = _check_factors(x, conv1, conv2, alpha, omega)
    activation = None if activation is None else _check_activation(activation)
    return _cancellation_ratio(x, conv1, conv2, alpha, omega, activation)


def _cancellation_ratio(x, conv1, conv2, alpha, omega, activation=None):
    """:func:`cancellation_ratio` without the checks."""
    k, c2 = alpha.shape[1], conv2.out_channels
    w1, b1, w2 = _weights(alpha, omega, conv1, conv2)
    with torch.no_grad():
        h = _conv1(x, w1, b1, conv1)
        if activation is not None:
            h = activation(h)
        # grouped convolution: output channel j C + c is channel j's part of output c
        w_groups = w2.transpose(0, 1).reshape(k * c2, 1, *conv2.kernel_size)
        parts = F.conv2d(h, w_groups, None, conv2.stride, conv2.padding, conv2.dilation,
                         groups=k)
        parts = parts.reshape(parts.shape[0], k, c2, *parts.shape[2:]).double()
        each = parts.transpose(0, 1).reshape(k, -1).norm(dim=1).sum()
        total = parts.sum(dim=1).norm()
    if float(total) == 0:
        return math.nan if float(each) == 0 else math.inf
    return float(each / total)


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


def select_penalty(s_train: torch.Tensor, n_train: torch.Tensor, s_val: torch.Tensor,
                   n_val: torch.Tensor, v_val_sq: float, alpha0: torch.Tensor,
                   omega0: torch.Tensor, fractions: Sequence[float] = PENALTY_FRACTIONS,
                   max_iter: int = 200, tol: float = 1e-10,
                   v_train_sq: float | None = None) -> tuple[float, list[dict]]:
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
        raise ValueError(f"s_train must be square of size A*E with A = {a}, got shape "
                         f"{tuple(s_train.shape)}")
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
    return _select_penalty(s_train, n_train, s_val, n_val, v_val_sq, alpha0, omega0,
                           fractions, max_iter, tol, v_train_sq)


def _select_penalty(s_train, n_train, s_val, n_val, v_val_sq, alpha0, omega0, fractions,
                    max_iter=200, tol=1e-10, v_train_sq=None):
    """:func:`select_penalty` without the checks."""
    e = s_train.shape[0] // alpha0.shape[0]
    lam_max = _penalty_max(n_train, e)
    table = []
    for rho in fractions:
        lam = rho * lam_max
        alpha, omega, history = _exact_neurons(s_train, n_train, alpha0, omega0, max_iter, tol,
                                               v_train_sq, None, lam, "auto")
        theta = theta_of_factors(alpha, omega, e)
        score = _scaled_objective(theta, s_val, n_val, v_val_sq)
        table.append({"fraction": rho, "penalty": lam, "train": history[-1],
                      "val": score / v_val_sq if v_val_sq > 0 else 0.0,
                      "alpha": alpha, "omega": omega})
    best = min(table, key=lambda row: row["val"])
    return best["penalty"], table

