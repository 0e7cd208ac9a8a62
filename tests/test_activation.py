"""convtools.activation: the fit through the activation, signs, ± pairs, cancellation."""

import math

import pytest
import torch

import convtools as ct
from convtools import activation as act


def _problem(seed=0, c0=2, c1=3, c2=4, size=7, n=16, kernel2=3, stride2=1, padding2=1,
             bias=True, dtype=torch.float64):
    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(c0, c1, 3, padding=1, bias=bias).to(dtype)
    conv2 = torch.nn.Conv2d(c1, c2, kernel2, stride=stride2, padding=padding2).to(dtype)
    x = torch.randn(n, c0, size, size, dtype=dtype)
    with torch.no_grad():
        v = torch.randn_like(conv2(conv1(x)))
    return x, conv1, conv2, v


def _objective(x, conv1, conv2, v, alpha, omega, activation):
    d = act.contribution(x, conv1, conv2, alpha, omega, activation)
    return float((v - d).square().sum())


GEOMETRIES = [
    {},
    {"bias": False},
    {"kernel2": 1, "padding2": 0},
    {"stride2": 2, "padding2": 0, "size": 8},
    {"kernel2": 2, "padding2": 1, "c0": 1},
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_plus_minus_pairs_reproduce_the_linear_contribution(geometry):
    x, conv1, conv2, v = _problem(**geometry)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    alpha2, omega2 = act.plus_minus_pairs(fit.alpha, fit.omega)
    assert alpha2.shape == (fit.alpha.shape[0], 4) and omega2.shape[0] == 4
    linear = act.contribution(x, conv1, conv2, fit.alpha, fit.omega)
    through_relu = act.contribution(x, conv1, conv2, alpha2, omega2, torch.relu)
    torch.testing.assert_close(through_relu, linear, rtol=1e-12, atol=1e-12)
    # the module form of the activation works the same
    torch.testing.assert_close(
        act.contribution(x, conv1, conv2, alpha2, omega2, torch.nn.ReLU()), linear)


def test_contribution_matches_layers_from_factors():
    x, conv1, conv2, v = _problem(stride2=2, padding2=0, size=8)
    fit = ct.fit_neurons(x, conv1, conv2, v, 3, "tiny")
    new1, new2 = ct.layers_from_factors(fit.alpha, fit.omega, conv1, conv2)
    with torch.no_grad():
        expected = new2(torch.tanh(new1(x)))
    torch.testing.assert_close(
        act.contribution(x, conv1, conv2, fit.alpha, fit.omega, torch.tanh), expected)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("activation", [torch.relu, torch.tanh, torch.nn.ReLU()])
def test_fit_through_activation_never_increases_its_objective(geometry, activation):
    x, conv1, conv2, v = _problem(**geometry)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    start = _objective(x, conv1, conv2, v, fit.alpha, fit.omega, activation)
    alpha, omega, history = act.fit_through_activation(x, conv1, conv2, v, fit.alpha,
                                                       fit.omega, activation, max_iter=15)
    assert alpha.shape == fit.alpha.shape and omega.shape == fit.omega.shape
    assert all(b <= a for a, b in zip(history, history[1:]))
    assert history[0] == pytest.approx(start, rel=1e-10)
    end = _objective(x, conv1, conv2, v, alpha, omega, activation)
    assert end == pytest.approx(history[-1], rel=1e-10)
    assert end < start  # a random goal always leaves room for improvement


def test_fit_through_relu_improves_a_lot_on_a_planted_relu_target():
    x, conv1, conv2, _ = _problem(n=32)
    torch.manual_seed(1)
    true_a = torch.randn(conv1.weight[0].numel() + 1, 2, dtype=torch.float64)
    true_o = torch.randn(2, conv2.out_channels * 9, dtype=torch.float64)
    v = act.contribution(x, conv1, conv2, true_a, true_o, torch.relu)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    alpha, omega, history = act.fit_through_activation(x, conv1, conv2, v, fit.alpha,
                                                       fit.omega, torch.relu, max_iter=200)
    assert history[-1] < 0.3 * history[0]  # non-convex: a local optimum, far below the start


def test_identity_activation_stays_at_the_linear_optimum():
    # with a 1x1 conv2 TINY's closed form is the exact linear optimum
    x, conv1, conv2, v = _problem(kernel2=1, padding2=0)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    alpha, omega, history = act.fit_through_activation(x, conv1, conv2, v, fit.alpha,
                                                       fit.omega, None, max_iter=20)
    assert history[-1] == pytest.approx(history[0], rel=1e-9)
    torch.testing.assert_close(alpha @ omega, fit.alpha @ fit.omega, rtol=1e-6, atol=1e-9)
    identity = act.fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega,
                                          lambda z: z, max_iter=20)[2]
    assert identity[-1] == pytest.approx(history[0], rel=1e-9)


def test_identity_activation_reaches_the_linear_optimum_from_a_random_start():
    # 1x1 conv2: the closed form is the exact optimum, and the factorized problem has no
    # spurious local minimum
    x, conv1, conv2, v = _problem(kernel2=1, padding2=0, n=8, size=5)
    tiny = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    best_linear = _objective(x, conv1, conv2, v, tiny.alpha, tiny.omega, None)
    gen = torch.Generator().manual_seed(0)
    alpha0 = torch.randn(tiny.alpha.shape, generator=gen, dtype=torch.float64)
    omega0 = torch.randn(tiny.omega.shape, generator=gen, dtype=torch.float64)
    _, _, history = act.fit_through_activation(x, conv1, conv2, v, alpha0, omega0, None,
                                               max_iter=300, tol=0.0)
    assert history[-1] == pytest.approx(best_linear, rel=1e-6)


def test_fit_keeps_dtype_and_handles_float32():
    x, conv1, conv2, v = _problem(dtype=torch.float32)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    alpha, omega, history = act.fit_through_activation(x, conv1, conv2, v, fit.alpha,
                                                       fit.omega, torch.relu, max_iter=5)
    assert alpha.dtype == omega.dtype == torch.float32
    assert all(b <= a for a, b in zip(history, history[1:]))


def test_private_fit_has_the_documented_positional_order():
    x, conv1, conv2, v = _problem()
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    public = act.fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu,
                                        max_iter=3)
    private = act._fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega,
                                          torch.relu, 3)
    for a, b in zip(public[:2], private[:2]):
        torch.testing.assert_close(a, b)
    assert public[2] == private[2]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_sign_choice_never_lowers_the_first_order_gain(geometry, seed):
    x, conv1, conv2, v = _problem(seed=seed, n=8, **geometry)
    for method in ("tiny", "exact"):
        fit = ct.fit_neurons(x, conv1, conv2, v, 3, method, max_iter=10)
        plus, _ = act.first_order_gains(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu)
        alpha, omega = act.choose_signs(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu)
        after, _ = act.first_order_gains(x, conv1, conv2, v, alpha, omega, torch.relu)
        assert bool((after >= plus - 1e-12).all())
        # the gain equals <v, D_j> computed directly
        for j in range(alpha.shape[1]):
            d = act.contribution(x, conv1, conv2, alpha[:, j:j + 1], omega[j:j + 1],
                                 torch.relu)
            assert float((v * d).sum()) == pytest.approx(float(after[j]), rel=1e-9, abs=1e-9)
        # the linear product kernel is unchanged up to the signs of its rank-one terms
        torch.testing.assert_close(alpha.abs(), fit.alpha.abs())


def test_sign_choice_is_neutral_for_the_identity():
    x, conv1, conv2, v = _problem()
    fit = ct.fit_neurons(x, conv1, conv2, v, 3, "tiny")
    alpha, omega = act.choose_signs(x, conv1, conv2, v, fit.alpha, fit.omega, None)
    torch.testing.assert_close(alpha, fit.alpha)
    torch.testing.assert_close(omega, fit.omega)


def test_cancellation_ratio():
    x, conv1, conv2, v = _problem()
    fit = ct.fit_neurons(x, conv1, conv2, v, 3, "tiny")
    ratio = act.cancellation_ratio(x, conv1, conv2, fit.alpha, fit.omega)
    assert ratio >= 1 - 1e-12
    # one channel cannot cancel; a channel and its exact negative cancel completely
    assert act.cancellation_ratio(x, conv1, conv2, fit.alpha[:, :1], fit.omega[:1]) \
        == pytest.approx(1.0)
    alpha2 = torch.cat([fit.alpha[:, :1], fit.alpha[:, :1]], dim=1)
    omega2 = torch.cat([fit.omega[:1], -fit.omega[:1]])
    assert math.isinf(act.cancellation_ratio(x, conv1, conv2, alpha2, omega2)) or \
        act.cancellation_ratio(x, conv1, conv2, alpha2, omega2) > 1e10
    # direct computation
    parts = [act.contribution(x, conv1, conv2, fit.alpha[:, j:j + 1], fit.omega[j:j + 1])
             for j in range(3)]
    expected = sum(float(p.norm()) for p in parts) / float(sum(parts).norm())
    assert ratio == pytest.approx(expected, rel=1e-10)


def test_inputs_are_checked_and_named():
    x, conv1, conv2, v = _problem()
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    with pytest.raises(ValueError, match="alpha"):
        act.fit_through_activation(x, conv1, conv2, v, fit.alpha[1:], fit.omega, torch.relu)
    with pytest.raises(ValueError, match="omega"):
        act.fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega[:, 1:], torch.relu)
    with pytest.raises(TypeError, match="activation"):
        act.fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega, "relu")
    with pytest.raises(ValueError, match="max_iter"):
        act.fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu,
                                   max_iter=0)
    with pytest.raises(ValueError, match="v_goal"):
        act.fit_through_activation(x, conv1, conv2, v[:3], fit.alpha, fit.omega, torch.relu)
    with pytest.raises(TypeError, match="alpha"):
        act.choose_signs(x, conv1, conv2, v, fit.alpha.float(), fit.omega, torch.relu)
    with pytest.raises(ValueError, match="omega"):
        act.plus_minus_pairs(fit.alpha, fit.omega[:1])
