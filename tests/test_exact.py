"""Tests of convtools.exact: each algorithm alone, the auto rule, the penalty, the checks."""

import pytest
import torch
from _reference import planted_pair

import convtools as ct
from convtools import exact

F64 = torch.float64
NAMED = ("gauss_newton", "variable_projection", "alternating_least_squares")


def _tiny_start(x, conv1, conv2, v, k):
    s, n = ct.statistics(x, conv1, conv2, v, kind="tiny")
    alpha, omega, _ = ct.optimal_added_parameters(s, n, 1e-10, 0.0, max_neurons=k)
    return alpha, omega


def _problem(k_true=3, k=2, noise=0.3, penalty=0.0, seed=0):
    x, conv1, conv2, v = planted_pair(k_true=k_true, seed=seed)
    v = v + noise * torch.randn(v.shape, dtype=F64, generator=torch.Generator().manual_seed(seed))
    s_full, n_full = ct.statistics(x, conv1, conv2, v, kind="full")
    alpha0, omega0 = _tiny_start(x, conv1, conv2, v, k)
    v_sq = float(v.square().sum())
    problem = exact.ExactProblem.from_statistics(s_full, n_full, alpha0.shape[0], v_sq, penalty)
    a, e, c = problem.sizes
    w3 = omega0.reshape(k, c, e).permute(0, 2, 1)
    return problem, alpha0, w3, (s_full, n_full, alpha0, omega0, v_sq)


def _monotone(history):
    return all(b <= a for a, b in zip(history, history[1:]))


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("penalty", [0.0, 5.0])
def test_each_algorithm_decreases_the_objective_monotonically(name, penalty):
    problem, alpha, w3, _ = _problem(penalty=penalty)
    start = problem.value(alpha, w3)
    end_alpha, end_w3, history = getattr(exact, name)(
        problem, alpha, w3, 40, 1e-12, problem.constant
    )
    assert len(history) > 2 and _monotone(history)
    assert history[0] == pytest.approx(start)
    assert history[-1] == pytest.approx(problem.value(end_alpha, end_w3), rel=1e-12)
    assert history[-1] < 0.99 * start


@pytest.mark.parametrize("name", NAMED)
def test_each_algorithm_recovers_a_planted_pair(name):
    problem, alpha, w3, _ = _problem(k_true=3, k=3, noise=0.0)
    iterations = 3000 if name == "alternating_least_squares" else 500
    *_, history = getattr(exact, name)(problem, alpha, w3, iterations, 1e-14, problem.constant)
    assert (max(history[-1], 0.0) / problem.constant) ** 0.5 < 1e-4
    assert (history[0] / problem.constant) ** 0.5 > 1e-2  # TINY's start is far from it


def test_the_three_algorithms_agree_on_a_small_problem():
    problem, alpha, w3, _ = _problem(k_true=3, k=2, noise=0.3)
    ends = {}
    for name in NAMED:
        iterations = 5000 if name == "alternating_least_squares" else 1000
        *_, history = getattr(exact, name)(problem, alpha, w3, iterations, 1e-15, problem.constant)
        ends[name] = history[-1]
    reference = ends["gauss_newton"]
    for name, value in ends.items():
        assert value == pytest.approx(reference, rel=1e-5), (name, ends)


def test_exact_neurons_returns_the_algorithms_end_point_balanced():
    problem, _, _, (s_full, n_full, alpha0, omega0, v_sq) = _problem()
    for name in NAMED:
        alpha, omega, history = ct.exact_neurons(
            s_full, n_full, alpha0, omega0, max_iter=30, v_sq_norm=v_sq, algorithm=name
        )
        e = problem.sizes[1]
        end = ct.objective(ct.layouts.theta_of_factors(alpha, omega, e), s_full, n_full, v_sq)
        assert float(end) == pytest.approx(history[-1], rel=1e-10)
        # balanced: α's columns and ω's rows carry the same norms
        torch.testing.assert_close(alpha.norm(dim=0), omega.norm(dim=1))


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ((28, 9, 4, 2), "gauss_newton"),  # 56 + 72 = 128 unknowns
        ((28, 9, 4, 5), "gauss_newton"),  # 140 + 180 = 320
        ((145, 9, 16, 4), "variable_projection"),  # 580 + 576 = 1156
        ((10, 1, 1, 50), "gauss_newton"),  # exactly 500 + 50 = 550
        ((10, 1, 1, 55), "variable_projection"),  # 605
    ],
)
def test_auto_picks_as_documented(sizes, expected):
    a, e, c, k = sizes
    assert exact.choose_algorithm(a, e, c, k) == expected
    assert (a * k + k * e * c <= exact.GAUSS_NEWTON_SIZE) == (expected == "gauss_newton")


def test_auto_runs_the_chosen_algorithm(monkeypatch):
    _, _, _, (s_full, n_full, alpha0, omega0, v_sq) = _problem()
    called = []
    for name in NAMED:
        original = exact._ALGORITHMS[name]

        def spy(*args, _name=name, _original=original, **kwargs):
            called.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setitem(exact._ALGORITHMS, name, spy)
    ct.exact_neurons(s_full, n_full, alpha0, omega0, max_iter=3, v_sq_norm=v_sq)
    ct.exact_neurons(
        s_full, n_full, alpha0, omega0, max_iter=3, v_sq_norm=v_sq, algorithm="variable_projection"
    )
    a, k = alpha0.shape
    e = s_full.shape[0] // a
    assert called == [exact.choose_algorithm(a, e, n_full.shape[1], k), "variable_projection"]


def test_penalty_tends_to_exact_and_shrinks_the_nuclear_norm():
    _, _, _, (s_full, n_full, alpha0, omega0, v_sq) = _problem()
    e = s_full.shape[0] // alpha0.shape[0]

    def solve(lam):
        alpha, omega, history = ct.exact_neurons(
            s_full, n_full, alpha0, omega0, v_sq_norm=v_sq, penalty=lam, tol=1e-14
        )
        theta = ct.layouts.theta_of_factors(alpha, omega, e)
        fit = float(ct.objective(theta, s_full, n_full, v_sq))
        nuclear = float(torch.linalg.svdvals(alpha @ omega).sum())
        return fit, nuclear, history, alpha, omega

    fit0, nuclear0, *_ = solve(0.0)
    previous = nuclear0
    for lam in (1e-8, 1e-6):
        fit, nuclear, history, alpha, omega = solve(lam * float(s_full.diagonal().mean()))
        assert fit == pytest.approx(fit0, rel=1e-4)
    fits = []
    for lam in (1.0, 10.0, 100.0):
        fit, nuclear, history, alpha, omega = solve(lam * float(s_full.diagonal().mean()))
        assert _monotone(history)
        # the penalized value is the fit plus 2 λ ‖Θ‖_* at balanced factors
        scale = lam * float(s_full.diagonal().mean())
        assert history[-1] == pytest.approx(fit + 2 * scale * nuclear, rel=1e-8)
        assert nuclear <= previous * (1 + 1e-8)
        previous = nuclear
        fits.append(fit)
    assert fits == sorted(fits)  # a larger penalty fits less


def test_exact_is_never_worse_than_its_start():
    x, conv1, conv2, v = planted_pair(k_true=2)
    s_full, n_full = ct.statistics(x, conv1, conv2, v, kind="full")
    alpha0, omega0 = _tiny_start(x, conv1, conv2, v, 2)
    alpha1, omega1, _ = ct.exact_neurons(s_full, n_full, alpha0, omega0)
    for name in NAMED:
        _, _, history = ct.exact_neurons(s_full, n_full, alpha1, omega1, max_iter=5, algorithm=name)
        assert history[-1] <= history[0]


def test_exact_bad_inputs():
    s9, n9 = torch.eye(9, dtype=F64), torch.zeros(9, 2, dtype=F64)
    alpha, omega = torch.zeros(3, 1, dtype=F64), torch.zeros(1, 6, dtype=F64)
    with pytest.raises(ValueError, match="square of size A\\*E with A = 3"):
        ct.exact_neurons(torch.eye(10, dtype=F64), torch.zeros(10, 2, dtype=F64), alpha, omega)
    with pytest.raises(ValueError, match=r"omega0 must have shape \(1, 6\)"):
        ct.exact_neurons(s9, n9, alpha, torch.zeros(1, 5, dtype=F64))
    with pytest.raises(ValueError, match="penalty must be a finite number >= 0"):
        ct.exact_neurons(s9, n9, alpha, omega, penalty=-1.0)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        ct.exact_neurons(s9, n9, alpha, omega, algorithm="newton")
    with pytest.raises(ValueError, match="alpha0 is empty"):
        ct.exact_neurons(s9, n9, torch.zeros(3, 0, dtype=F64), torch.zeros(0, 6, dtype=F64))
    with pytest.raises(TypeError, match="max_iter must be an int"):
        ct.exact_neurons(s9, n9, alpha, omega, max_iter=2.5)
