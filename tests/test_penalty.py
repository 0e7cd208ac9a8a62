"""The nuclear-norm regularized exact solver and the choice of its λ."""

import pytest
import torch

import convtools as ct
from convtools import penalty
from convtools.layouts import objective, theta_of_factors


def _statistics(seed=0, n=8):
    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(2, 3, 3, padding=1).double()
    conv2 = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    x = torch.randn(n, 2, 5, 5, dtype=torch.float64)
    v = torch.randn(n, 4, 5, 5, dtype=torch.float64)
    s_full, n_full = ct.statistics(x, conv1, conv2, v, kind="full")
    tiny = ct.fit_neurons(x, conv1, conv2, v, 2, "tiny")
    return s_full, n_full, float(v.square().sum()), tiny.alpha, tiny.omega


def _regularized(alpha, omega, s_full, n_full, v_sq, lam):
    theta = theta_of_factors(alpha, omega, 9)
    return float(objective(theta, s_full, n_full, v_sq)) + lam * float(
        alpha.square().sum() + omega.square().sum()
    )


@pytest.mark.parametrize(
    "algorithm", ["gauss_newton", "variable_projection", "alternating_least_squares"]
)
@pytest.mark.parametrize("rho", [0.01, 0.1, 0.5])
def test_regularized_solver_decreases_its_objective_monotonically(algorithm, rho):
    s_full, n_full, v_sq, alpha0, omega0 = _statistics()
    lam = rho * penalty.penalty_max(n_full, 9)
    alpha, omega, history = ct.exact_neurons(
        s_full,
        n_full,
        alpha0,
        omega0,
        max_iter=30,
        v_sq_norm=v_sq,
        penalty=lam,
        algorithm=algorithm,
    )
    assert all(b <= a * (1 + 1e-12) for a, b in zip(history, history[1:]))
    assert history[0] == pytest.approx(
        _regularized(alpha0, omega0, s_full, n_full, v_sq, lam), rel=1e-9
    )
    assert _regularized(alpha, omega, s_full, n_full, v_sq, lam) <= history[0] * (1 + 1e-12)


@pytest.mark.parametrize("algorithm", ["alternating_least_squares"])
def test_regularized_solver_tends_to_exact_as_lambda_vanishes(algorithm):
    # ALS is a continuous map of λ (Gauss-Newton's accept/reject steps are not)
    s_full, n_full, v_sq, alpha0, omega0 = _statistics()
    # same start, same solver and iteration budget; only λ differs
    options = {"max_iter": 40, "v_sq_norm": v_sq, "algorithm": algorithm}
    a0, o0, _ = ct.exact_neurons(s_full, n_full, alpha0, omega0, **options)
    theta0 = theta_of_factors(a0, o0, 9)
    exact_value = float(objective(theta0, s_full, n_full, v_sq))
    lam_max = penalty.penalty_max(n_full, 9)
    gaps, distances, nuclear = [], [], []
    for rho in (1e-1, 1e-3, 1e-6):
        a, o, _ = ct.exact_neurons(s_full, n_full, alpha0, omega0, penalty=rho * lam_max, **options)
        theta = theta_of_factors(a, o, 9)
        gaps.append(abs(float(objective(theta, s_full, n_full, v_sq)) - exact_value) / v_sq)
        distances.append(float((theta - theta0).norm() / theta0.norm()))
        nuclear.append(float(torch.linalg.matrix_norm(ct.layouts.theta_to_tiny(theta), ord="nuc")))
    assert gaps[-1] < 1e-4 and distances[-1] < 1e-2
    assert gaps[-1] <= gaps[0] and distances[-1] <= distances[0]
    # a larger λ gives a smaller nuclear norm of Θ
    assert nuclear[0] <= nuclear[-1]


def test_penalty_max_is_the_threshold_of_the_zero_solution():
    s_full, n_full, v_sq, alpha0, omega0 = _statistics()
    lam_max = penalty.penalty_max(n_full, 9)
    n_tiny = ct.layouts.n_full_to_tiny(n_full, 9)
    assert lam_max == pytest.approx(float(torch.linalg.svdvals(n_tiny)[0]))
    above = ct.exact_neurons(
        s_full, n_full, alpha0, omega0, max_iter=100, v_sq_norm=v_sq, penalty=1.05 * lam_max
    )
    below = ct.exact_neurons(
        s_full, n_full, alpha0, omega0, max_iter=100, v_sq_norm=v_sq, penalty=0.5 * lam_max
    )
    norm = float(theta_of_factors(alpha0, omega0, 9).norm())
    assert float(theta_of_factors(above[0], above[1], 9).norm()) < 1e-3 * norm
    assert float(theta_of_factors(below[0], below[1], 9).norm()) > 1e-2 * norm


def test_select_penalty_scores_on_held_out_statistics():
    s_tr, n_tr, v_tr, alpha0, omega0 = _statistics(seed=0)
    s_val, n_val, v_val, _, _ = _statistics(seed=0)
    lam, table = penalty.select_penalty(
        s_tr,
        n_tr,
        s_val,
        n_val,
        v_val,
        alpha0,
        omega0,
        fractions=(0.0, 0.1, 0.5),
        max_iter=30,
        v_train_sq=v_tr,
    )
    assert [row["fraction"] for row in table] == [0.0, 0.1, 0.5]
    best = min(table, key=lambda row: row["val"])
    assert lam == best["penalty"]
    assert all(0 <= row["val"] <= 1 + 1e-12 for row in table)
    # the same images as "held-out": the unpenalized fit scores best or equal
    assert table[0]["val"] <= min(row["val"] for row in table) + 1e-9
    with pytest.raises(ValueError, match="fractions"):
        penalty.select_penalty(s_tr, n_tr, s_val, n_val, v_val, alpha0, omega0, fractions=(1.5,))
    with pytest.raises(ValueError, match="s_val"):
        penalty.select_penalty(s_tr, n_tr, s_val[1:], n_val, v_val, alpha0, omega0)
