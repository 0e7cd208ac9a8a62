"""Tests of convtools.layers: new conv layers from factors, the seed's full path, grow."""

import pytest
import torch
from _reference import planted_pair
from _strategies import conv_pairs
from hypothesis import given

import convtools as ct

F64 = torch.float64


@given(conv_pairs(max_kernel=4, max_size=10))
def test_layers_compute_what_the_formula_predicts(case):
    x, conv1, conv2 = case
    k = 2
    a = conv1.weight[0].numel() + (conv1.bias is not None)
    e = ct.geometry.kernel_positions(conv2)
    g = torch.Generator().manual_seed(0)
    alpha = torch.randn(a, k, dtype=F64, generator=g)
    omega = torch.randn(k, conv2.out_channels * e, dtype=F64, generator=g)
    new1, new2 = ct.layers_from_factors(alpha, omega, conv1, conv2)
    assert new1.out_channels == k and new2.in_channels == k and new2.bias is None
    assert (new1.bias is not None) == (conv1.bias is not None)
    for new, old in ((new1, conv1), (new2, conv2)):
        assert (new.kernel_size, new.stride, new.padding, new.dilation) == (
            old.kernel_size,
            old.stride,
            old.padding,
            old.dilation,
        )
    with torch.no_grad():
        out = new2(new1(x))
        predicted = ct.geometry.apply_product_kernel(
            ct.unfold_twice(x, conv1, conv2),
            ct.layouts.theta_of_factors(alpha, omega, e),
            out.shape[-2:],
        )
        torch.testing.assert_close(out, predicted)
        torch.testing.assert_close(
            ct.product_kernel(new1, new2), ct.layouts.theta_of_factors(alpha, omega, e)
        )


def test_refactor_full_keeps_k_leading_directions():
    g = torch.Generator().manual_seed(1)
    alpha_full = torch.randn(12, 5, dtype=F64, generator=g)  # A = 4, E = 3
    omega_full = torch.randn(5, 2, dtype=F64, generator=g)
    alpha, omega = ct.layers.refactor_full(alpha_full, omega_full, e=3, k=2)
    theta = ct.layouts.theta_to_tiny((alpha_full @ omega_full).reshape(4, 3, 2))
    u, s, vh = torch.linalg.svd(theta)
    torch.testing.assert_close(alpha @ omega, (u[:, :2] * s[:2]) @ vh[:2])
    # asking for more than the rank gives the rank
    alpha, _ = ct.layers.refactor_full(alpha_full, omega_full, e=3, k=10)
    assert alpha.shape == (4, 4)


@pytest.mark.parametrize("method", ct.layers.METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_grow_builds_k_channels_in_the_input_dtype(method, dtype):
    x, conv1, conv2, v = planted_pair(k_true=2, n=4, hw=6)
    x, v, conv1, conv2 = x.to(dtype), v.to(dtype), conv1.to(dtype), conv2.to(dtype)
    new1, new2 = ct.grow(x, conv1, conv2, v, 2, method=method)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, method=method)
    assert fit.k == 2 and new1.out_channels == 2 and new2.in_channels == 2
    assert new1.weight.dtype == new2.weight.dtype == fit.alpha.dtype == dtype
    assert new1.weight.device == x.device
    assert (fit.history is not None) == (method == "exact")
    with torch.no_grad():
        assert ct.relative_residual(new2(new1(x)), v) < 1.0


def test_grow_exact_fits_a_planted_target_tiny_and_full_do_not():
    x, conv1, conv2, v = planted_pair(k_true=3)
    residual = {}
    for method in ct.layers.METHODS:
        new1, new2 = ct.grow(x, conv1, conv2, v, 3, method=method)
        with torch.no_grad():
            residual[method] = ct.relative_residual(new2(new1(x)), v)
    assert residual["exact"] < 1e-6
    assert residual["tiny"] > 1e-2 and residual["full"] > 1e-2


def test_grow_exact_never_worse_than_tiny_on_a_random_target():
    x, conv1, conv2, _ = planted_pair(k_true=3)
    v = torch.randn(
        x.shape[0],
        conv2.out_channels,
        *x.shape[-2:],
        dtype=F64,
        generator=torch.Generator().manual_seed(3),
    )
    residual = {}
    for method in ("tiny", "exact"):
        new1, new2 = ct.grow(x, conv1, conv2, v, 3, method=method)
        with torch.no_grad():
            residual[method] = ct.relative_residual(new2(new1(x)), v)
    assert residual["exact"] <= residual["tiny"]
    history = ct.fit_neurons(x, conv1, conv2, v, 3, method="exact").history
    assert all(b <= a for a, b in zip(history, history[1:]))


def test_grow_restarts_never_worse_and_reproducible():
    x, conv1, conv2, v = planted_pair(k_true=2, n=6, hw=6)
    v = v + 0.5 * torch.randn(v.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    ends = []
    for restarts, seed in ((0, 0), (3, 5), (3, 5)):
        fit = ct.fit_neurons(
            x,
            conv1,
            conv2,
            v,
            2,
            method="exact",
            restarts=restarts,
            generator=torch.Generator().manual_seed(seed),
        )
        ends.append(fit.history[-1])
    assert ends[1] <= ends[0]
    assert ends[1] == ends[2]


def test_grow_gives_fewer_channels_only_when_fewer_directions_exist():
    torch.manual_seed(0)
    conv1 = torch.nn.Conv2d(1, 3, 1, bias=False, dtype=F64)  # A = 1: one direction at most
    conv2 = torch.nn.Conv2d(3, 2, 3, padding=1, dtype=F64)
    x = torch.randn(2, 1, 5, 5, dtype=F64)
    v = torch.randn(2, 2, 5, 5, dtype=F64)
    for method in ct.layers.METHODS:
        new1, _ = ct.grow(x, conv1, conv2, v, 3, method=method)
        assert ct.fit_neurons(x, conv1, conv2, v, 3, method=method).k == 1
        assert new1.out_channels == 1


def test_grow_bad_inputs():
    x, conv1, conv2, v = planted_pair(k_true=2, n=2, hw=5)
    with pytest.raises(ValueError, match="method must be one of"):
        ct.grow(x, conv1, conv2, v, 2, method="svd")
    with pytest.raises(ValueError, match="k must be >= 1"):
        ct.grow(x, conv1, conv2, v, 0)
    with pytest.raises(ValueError, match="restarts must be an int >= 0"):
        ct.grow(x, conv1, conv2, v, 2, method="exact", restarts=-1)
    with pytest.raises(TypeError, match="k must be an int"):
        ct.grow(x, conv1, conv2, v, 2.0)
    with pytest.raises(ValueError, match="x must have 3 channels"):
        ct.grow(x[:, :2], conv1, conv2, v, 2)
    with pytest.raises(ValueError, match=r"alpha must have shape \(28, \*\)"):
        ct.layers_from_factors(
            torch.zeros(5, 2, dtype=F64), torch.zeros(2, 36, dtype=F64), conv1, conv2
        )
    with pytest.raises(ValueError, match="penalty applies to method='exact' only"):
        ct.grow(x, conv1, conv2, v, 2, method="tiny", penalty=1.0)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        ct.grow(x, conv1, conv2, v, 2, method="exact", algorithm="newton")
    with pytest.raises(ValueError, match="x is empty"):
        ct.grow(x[:0], conv1, conv2, v[:0], 2)
    with pytest.raises(ValueError, match="must have the same shape"):
        ct.relative_residual(torch.zeros(2), torch.zeros(3))


def test_grow_through_relu_never_worse_than_its_linear_start():
    x, conv1, conv2, v = planted_pair(k_true=2, n=6, hw=6)
    v = v + 0.3 * torch.randn(v.shape, dtype=F64, generator=torch.Generator().manual_seed(4))
    for method in ("tiny", "exact"):
        linear = ct.fit_neurons(x, conv1, conv2, v, 2, method=method)
        fit = ct.fit_neurons(x, conv1, conv2, v, 2, method=method, activation=torch.relu)
        history = fit.activation_history
        assert all(b <= a for a, b in zip(history, history[1:]))
        new1, new2 = ct.grow(x, conv1, conv2, v, 2, method=method, activation=torch.nn.ReLU())
        with torch.no_grad():
            through = (v - new2(torch.relu(new1(x)))).square().sum()
            start = (
                (
                    v
                    - ct.layers_from_factors(linear.alpha, linear.omega, conv1, conv2)[1](
                        torch.relu(
                            ct.layers_from_factors(linear.alpha, linear.omega, conv1, conv2)[0](x)
                        )
                    )
                )
                .square()
                .sum()
            )
        assert float(through) == pytest.approx(history[-1], rel=1e-9)
        assert float(through) <= float(start) * (1 + 1e-12)


def test_grow_through_the_identity_keeps_the_exact_optimum():
    x, conv1, conv2, v = planted_pair(k_true=2, n=6, hw=6)
    v = v + 0.3 * torch.randn(v.shape, dtype=F64, generator=torch.Generator().manual_seed(5))
    linear = ct.fit_neurons(x, conv1, conv2, v, 2, method="exact", tol=1e-14)
    fit = ct.fit_neurons(x, conv1, conv2, v, 2, method="exact", tol=1e-14, activation=lambda z: z)
    assert fit.activation_history[-1] == pytest.approx(linear.history[-1], rel=1e-6)
    theta = ct.layouts.theta_of_factors(fit.alpha, fit.omega, 9)
    theta0 = ct.layouts.theta_of_factors(linear.alpha, linear.omega, 9)
    torch.testing.assert_close(theta, theta0, rtol=1e-3, atol=1e-6 * float(theta0.abs().max()))


def test_grow_activation_bad_inputs():
    x, conv1, conv2, v = planted_pair(k_true=2, n=2, hw=5)
    with pytest.raises(TypeError, match="activation"):
        ct.grow(x, conv1, conv2, v, 2, activation="relu")
    with pytest.raises(ValueError, match="activation_iter must be >= 1"):
        ct.grow(x, conv1, conv2, v, 2, activation=torch.relu, activation_iter=0)
