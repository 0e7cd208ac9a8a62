"""Tests of convtools.closed_form: closed form vs gromo, PSD solves, one-layer update."""

import pytest
import torch
from gromo.utils.tools import compute_optimal_added_parameters

import convtools as ct

F64 = torch.float64


def _random_spd(d, rank=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    factor = torch.randn(d, rank or d + 3, dtype=F64, generator=g)
    return factor @ factor.T, factor


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("max_neurons", [None, 2])
def test_closed_form_equals_gromo(dtype, max_neurons):
    s, _ = _random_spd(6)
    n = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    s, n = s.to(dtype), n.to(dtype)
    alpha, omega, sigma = ct.optimal_added_parameters(s, n, 1e-6, 1e-3, max_neurons=max_neurons)
    g_alpha, g_omega, g_sigma = compute_optimal_added_parameters(
        s, n, 1e-6, 1e-3, maximum_added_neurons=max_neurons
    )
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {}
    assert alpha.dtype == omega.dtype == sigma.dtype == dtype
    torch.testing.assert_close(alpha, g_alpha.T, **tol)
    torch.testing.assert_close(omega, g_omega.T, **tol)
    torch.testing.assert_close(sigma, g_sigma, **tol)


def test_closed_form_is_the_rank_k_optimum():
    s, _ = _random_spd(7, seed=2)
    n = torch.randn(7, 5, dtype=F64, generator=torch.Generator().manual_seed(3))

    def surrogate(theta):
        return float((theta * (s @ theta)).sum() - 2 * (n * theta).sum())

    alpha, omega, _ = ct.optimal_added_parameters(s, n, 0.0, 0.0, max_neurons=2)
    best = surrogate(alpha @ omega)
    g = torch.Generator().manual_seed(4)
    for _ in range(200):
        a, w = torch.randn(7, 2, dtype=F64, generator=g), torch.randn(2, 5, dtype=F64, generator=g)
        # the best scaling of a random rank-2 candidate is still worse
        theta = a @ w
        scale = float((n * theta).sum() / (theta * (s @ theta)).sum())
        assert surrogate(scale * theta) >= best - 1e-9
    # all directions: the unconstrained optimum S^-1 N
    alpha, omega, _ = ct.optimal_added_parameters(s, n, 0.0, 0.0)
    torch.testing.assert_close(alpha @ omega, torch.linalg.solve(s, n))


def test_thresholds_drop_directions():
    s, _ = _random_spd(6, rank=3)  # rank 3: three eigenvalues are ~0
    n = s @ torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(5))
    alpha, omega, sigma = ct.optimal_added_parameters(s, n, 1e-8, 1e-8)
    assert sigma.shape == (3,) and alpha.shape == (6, 3) and omega.shape == (3, 4)
    torch.testing.assert_close(s @ (alpha @ omega), n)


def test_solve_psd_is_right_on_rank_deficient_gram():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(40, 5, dtype=F64, generator=g) @ torch.randn(5, 12, dtype=F64, generator=g)
    y = torch.randn(40, 3, dtype=F64, generator=g)
    w = ct.solve_psd(x.T @ x, x.T @ y)
    reference = torch.linalg.lstsq(x, y, driver="gelsd").solution
    torch.testing.assert_close(x @ w, x @ reference)
    # the normal equations hold
    torch.testing.assert_close(x.T @ (x @ w), x.T @ y)
    # vector right-hand side
    torch.testing.assert_close(ct.solve_psd(x.T @ x, (x.T @ y)[:, 0]), w[:, 0])


def test_solve_psd_cut_off_follows_the_precision_of_s():
    # a float32 Gram of rank 20 in dimension 76: its null space holds float32 round-off,
    # which a float64 cut-off would invert
    g = torch.Generator().manual_seed(0)
    b, y = torch.randn(20, 76, generator=g), torch.randn(20, 6, generator=g)
    w = ct.solve_psd(b.T @ b, b.T @ y)
    assert w.dtype == torch.float32
    reference = torch.linalg.pinv(b.double()) @ y.double()
    assert float((w.double() - reference).norm() / reference.norm()) < 1e-4


def test_optimal_delta_recovers_a_planted_convolution():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=F64)
    truth = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=F64)
    inp = torch.randn(8, 3, 9, 9, dtype=F64)
    with torch.no_grad():
        v = truth(inp)
    delta_weight, delta_bias = ct.optimal_delta(inp, conv, v)
    torch.testing.assert_close(delta_weight, truth.weight.detach())
    torch.testing.assert_close(delta_bias, truth.bias.detach())
    assert ct.project_goal(inp, conv, v).abs().max() < 1e-10


def test_projected_goal_is_orthogonal_to_every_update():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False, dtype=F64)
    inp = torch.randn(4, 2, 6, 6, dtype=F64)
    v = torch.randn(4, 3, 6, 6, dtype=F64)
    v_perp = ct.project_goal(inp, conv, v)
    b = ct.unfold_input(inp, conv)
    m = torch.einsum("ial, icl -> ac", b, v_perp.flatten(2))
    assert m.abs().max() < 1e-10 * v.abs().max() * b.abs().max() * b.shape[-1]
    assert v_perp.norm() < v.norm()


def test_solver_bad_inputs():
    s, _ = _random_spd(4)
    n = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="s must be square"):
        ct.optimal_added_parameters(torch.zeros(4, 3, dtype=F64), n)
    with pytest.raises(ValueError, match=r"n must have shape \(4, \*\)"):
        ct.optimal_added_parameters(s, torch.zeros(5, 2, dtype=F64))
    with pytest.raises(ValueError, match="max_neurons must be >= 1"):
        ct.optimal_added_parameters(s, n, max_neurons=0)
    with pytest.raises(TypeError, match="max_neurons must be an int"):
        ct.optimal_added_parameters(s, n, max_neurons=1.5)
    with pytest.raises(ValueError, match="numerical_threshold must be a finite number >= 0"):
        ct.optimal_added_parameters(s, n, numerical_threshold=-1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ct.optimal_added_parameters(s * float("nan"), n)
    with pytest.raises(ValueError, match="rhs must have shape"):
        ct.solve_psd(s, torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="v_goal must have the shape of conv"):
        ct.optimal_delta(torch.zeros(1, 2, 5, 5), torch.nn.Conv2d(2, 3, 3), torch.zeros(1, 3, 5, 5))
