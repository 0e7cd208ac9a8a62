"""convtools.signs: sign choice by the first-order gain, ± pairs, the cancellation ratio."""

import math

import pytest
import torch
from _activation_problems import GEOMETRIES, _problem

import convtools as ct
from convtools import activation as act
from convtools import signs


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_plus_minus_pairs_reproduce_the_linear_contribution(geometry):
    x, conv1, conv2, v = _problem(**geometry)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    alpha2, omega2 = signs.plus_minus_pairs(fit.alpha, fit.omega)
    assert alpha2.shape == (fit.alpha.shape[0], 4) and omega2.shape[0] == 4
    linear = act.contribution(x, conv1, conv2, fit.alpha, fit.omega)
    through_relu = act.contribution(x, conv1, conv2, alpha2, omega2, torch.relu)
    torch.testing.assert_close(through_relu, linear, rtol=1e-12, atol=1e-12)
    # the module form of the activation works the same
    torch.testing.assert_close(
        act.contribution(x, conv1, conv2, alpha2, omega2, torch.nn.ReLU()), linear
    )


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_sign_choice_never_lowers_the_first_order_gain(geometry, seed):
    x, conv1, conv2, v = _problem(seed=seed, n=8, **geometry)
    for method in ("tiny", "exact"):
        fit = ct.fit_neurons(x, conv1, conv2, v, 3, method, max_iter=10)
        plus, _ = signs.first_order_gains(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu)
        alpha, omega = signs.choose_signs(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu)
        after, _ = signs.first_order_gains(x, conv1, conv2, v, alpha, omega, torch.relu)
        assert bool((after >= plus - 1e-12).all())
        # the gain equals <v, D_j> computed directly
        for j in range(alpha.shape[1]):
            d = act.contribution(x, conv1, conv2, alpha[:, j : j + 1], omega[j : j + 1], torch.relu)
            assert float((v * d).sum()) == pytest.approx(float(after[j]), rel=1e-9, abs=1e-9)
        # the linear product kernel is unchanged up to the signs of its rank-one terms
        torch.testing.assert_close(alpha.abs(), fit.alpha.abs())


def test_sign_choice_is_neutral_for_the_identity():
    x, conv1, conv2, v = _problem()
    fit = ct.fit_neurons(x, conv1, conv2, v, 3, "tiny")
    alpha, omega = signs.choose_signs(x, conv1, conv2, v, fit.alpha, fit.omega, None)
    torch.testing.assert_close(alpha, fit.alpha)
    torch.testing.assert_close(omega, fit.omega)


def test_cancellation_ratio():
    x, conv1, conv2, v = _problem()
    fit = ct.fit_neurons(x, conv1, conv2, v, 3, "tiny")
    ratio = signs.cancellation_ratio(x, conv1, conv2, fit.alpha, fit.omega)
    assert ratio >= 1 - 1e-12
    # one channel cannot cancel; a channel and its exact negative cancel completely
    assert signs.cancellation_ratio(
        x, conv1, conv2, fit.alpha[:, :1], fit.omega[:1]
    ) == pytest.approx(1.0)
    alpha2 = torch.cat([fit.alpha[:, :1], fit.alpha[:, :1]], dim=1)
    omega2 = torch.cat([fit.omega[:1], -fit.omega[:1]])
    assert (
        math.isinf(signs.cancellation_ratio(x, conv1, conv2, alpha2, omega2))
        or signs.cancellation_ratio(x, conv1, conv2, alpha2, omega2) > 1e10
    )
    # direct computation
    parts = [
        act.contribution(x, conv1, conv2, fit.alpha[:, j : j + 1], fit.omega[j : j + 1])
        for j in range(3)
    ]
    expected = sum(float(p.norm()) for p in parts) / float(sum(parts).norm())
    assert ratio == pytest.approx(expected, rel=1e-10)
