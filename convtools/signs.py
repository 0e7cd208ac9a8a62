r"""Per-neuron pieces for networks with an activation: signs, ± pairs, cancellation.

The linear objective of :mod:`convtools.closed_form` and :mod:`convtools.exact` is invariant
under (α_j, ω_j) → (−α_j, −ω_j) and under any invertible mixing of the k channels; a network
with a ReLU between the new layers is invariant under neither. With
``D_j = conv2_{ω_j}(σ(conv1_{α_j}(x)))`` the contribution of neuron j:

- :func:`first_order_gains` and :func:`choose_signs`: keep for each neuron the sign with the
  larger first-order gain ``⟨v_goal, D_j⟩`` through the activation;
- :func:`plus_minus_pairs`: ``σ(z) − σ(−z) = z`` for the ReLU, so the 2k channels
  ``[α, −α]``, ``[ω; −ω]`` contribute through the ReLU exactly the linear contribution of
  (α, ω);
- :func:`cancellation_ratio`: ``Σ_j ‖D_j‖ / ‖Σ_j D_j‖`` (1 when the channels do not cancel).

Layouts as in :mod:`convtools.activation`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._checks import check_matrix
from .activation import (
    _check_activation,
    _check_factors,
    _check_pair_input,
    _conv1,
    _identity,
    _weights,
)
from .stats import check_goal

__all__ = [
    "cancellation_ratio",
    "choose_signs",
    "first_order_gains",
    "plus_minus_pairs",
]


# --------------------------------------------------------------------------- signs, pairs


def _first_order_gains(x, conv1, conv2, v_goal, alpha, omega, activation):
    """(gain of (α_j, ω_j), gain of (−α_j, −ω_j)), each of shape (k,)."""
    activation = _identity if activation is None else activation
    w1, b1, w2 = _weights(alpha, omega, conv1, conv2)
    with torch.no_grad():
        h = _conv1(x, w1, b1, conv1)
        # G = conv2_ω^T(v): ⟨v, conv2_ω(u)⟩ = ⟨G, u⟩ for every u, channel by channel
        g = torch.nn.grad.conv2d_input(
            h.shape, w2, v_goal, conv2.stride, conv2.padding, conv2.dilation
        )
        plus = (g * activation(h)).sum(dim=(0, 2, 3))
        minus = -(g * activation(-h)).sum(dim=(0, 2, 3))
    return plus, minus


def first_order_gains(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    v_goal: torch.Tensor,
    alpha: torch.Tensor,
    omega: torch.Tensor,
    activation: Callable | None,
) -> tuple[torch.Tensor, torch.Tensor]:
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


def choose_signs(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    v_goal: torch.Tensor,
    alpha: torch.Tensor,
    omega: torch.Tensor,
    activation: Callable | None,
) -> tuple[torch.Tensor, torch.Tensor]:
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


def plus_minus_pairs(alpha: torch.Tensor, omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def cancellation_ratio(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    alpha: torch.Tensor,
    omega: torch.Tensor,
    activation: Callable | None = None,
) -> float:
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
        parts = F.conv2d(h, w_groups, None, conv2.stride, conv2.padding, conv2.dilation, groups=k)
        parts = parts.reshape(parts.shape[0], k, c2, *parts.shape[2:]).double()
        each = parts.transpose(0, 1).reshape(k, -1).norm(dim=1).sum()
        total = parts.sum(dim=1).norm()
    if float(total) == 0:
        return math.nan if float(each) == 0 else math.inf
    return float(each / total)
