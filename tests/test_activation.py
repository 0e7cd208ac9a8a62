"""convtools.activation: the contribution of new neurons and the fit through the activation."""

import pytest
import torch
from _activation_problems import GEOMETRIES, _objective, _problem

import convtools as ct
from convtools import activation as act
from convtools import signs


def test_contribution_matches_layers_from_factors():
    x, conv1, conv2, v = _problem(stride2=2, padding2=0, size=8)
    fit = ct.fit_neurons(x, conv1, conv2, v, 3, "tiny")
    new1, new2 = ct.layers_from_factors(fit.alpha, fit.omega, conv1, conv2)
    with torch.no_grad():
        expected = new2(torch.tanh(new1(x)))
    torch.testing.assert_close(
        act.contribution(x, conv1, conv2, fit.alpha, fit.omega, torch.tanh), expected
    )


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("activation", [torch.relu, torch.tanh, torch.nn.ReLU()])
def test_fit_through_activation_never_increases_its_objective(geometry, activation):
    x, conv1, conv2, v = _problem(**geometry)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    start = _objective(x, conv1, conv2, v, fit.alpha, fit.omega, activation)
    alpha, omega, history = act.fit_through_activation(
        x, conv1, conv2, v, fit.alpha, fit.omega, activation, max_iter=15
    )
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
    alpha, omega, history = act.fit_through_activation(
        x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu, max_iter=200
    )
    assert history[-1] < 0.3 * history[0]  # non-convex: a local optimum, far below the start


def test_identity_activation_stays_at_the_linear_optimum():
    # with a 1x1 conv2 TINY's closed form is the exact linear optimum
    x, conv1, conv2, v = _problem(kernel2=1, padding2=0)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    alpha, omega, history = act.fit_through_activation(
        x, conv1, conv2, v, fit.alpha, fit.omega, None, max_iter=20
    )
    assert history[-1] == pytest.approx(history[0], rel=1e-9)
    torch.testing.assert_close(alpha @ omega, fit.alpha @ fit.omega, rtol=1e-6, atol=1e-9)
    identity = act.fit_through_activation(
        x, conv1, conv2, v, fit.alpha, fit.omega, lambda z: z, max_iter=20
    )[2]
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
    _, _, history = act.fit_through_activation(
        x, conv1, conv2, v, alpha0, omega0, None, max_iter=300, tol=0.0
    )
    assert history[-1] == pytest.approx(best_linear, rel=1e-6)


def test_fit_keeps_dtype_and_handles_float32():
    x, conv1, conv2, v = _problem(dtype=torch.float32)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    alpha, omega, history = act.fit_through_activation(
        x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu, max_iter=5
    )
    assert alpha.dtype == omega.dtype == torch.float32
    assert all(b <= a for a, b in zip(history, history[1:]))


def test_private_fit_has_the_documented_positional_order():
    x, conv1, conv2, v = _problem()
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    public = act.fit_through_activation(
        x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu, max_iter=3
    )
    private = act._fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu, 3)
    for a, b in zip(public[:2], private[:2]):
        torch.testing.assert_close(a, b)
    assert public[2] == private[2]


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
        act.fit_through_activation(x, conv1, conv2, v, fit.alpha, fit.omega, torch.relu, max_iter=0)
    with pytest.raises(ValueError, match="v_goal"):
        act.fit_through_activation(x, conv1, conv2, v[:3], fit.alpha, fit.omega, torch.relu)
    with pytest.raises(TypeError, match="alpha"):
        signs.choose_signs(x, conv1, conv2, v, fit.alpha.float(), fit.omega, torch.relu)
    with pytest.raises(ValueError, match="omega"):
        signs.plus_minus_pairs(fit.alpha, fit.omega[:1])
