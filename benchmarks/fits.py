"""The neuron fits timed: the exact solver and the fit through the activation.

* :func:`job_exact`: ``convtools.exact_neurons`` from TINY's closed form on a planted
  target, then ``convtools.grow(method="exact")`` end to end.
* :func:`job_activation`: ``convtools.activation.fit_through_activation`` (L-BFGS through a
  ReLU, over passes of x) from TINY's closed form, interleaved with its baseline, the
  closed-form TINY fit (``convtools.fit_neurons(method="tiny")``) on the same data.

Both run in a child process (``benchmarks.memory.run_isolated``) and return a dict.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.memory import KernelPeakMemory
from benchmarks.problems import make_convs, make_problem, torch_dtype
from benchmarks.timing import TimingPlan, time_interleaved, time_single

__all__ = ["ACTIVATION_ROUTES", "digits_28", "job_activation", "job_exact"]

MB = 2**20
ACTIVATION_ROUTES = ("tiny_closed_form", "fit_through_activation")


def _teacher_goal(
    x: Any, cfg: dict, channels: int, noise: float, seed: int, activation: Any = None
) -> Any:
    """v_goal made by a random teacher conv pair with ``channels`` channels, plus noise."""
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    dt = x.dtype
    # the problem's own geometry with ``channels`` intermediate channels (same dtype as x)
    t1, t2 = make_convs({**cfg, "c1": channels})
    with torch.no_grad():
        h = t1(x)
        v = t2(h if activation is None else activation(h))
        return v + noise * v.std() * torch.randn(v.shape, generator=g, dtype=dt)


def job_exact(cfg: dict, k: int, max_iter: int, tol: float, plan: TimingPlan) -> dict:
    """Time ``ct.exact_neurons`` (from the TINY start) and ``ct.grow(method="exact")``."""
    import torch  # noqa: PLC0415

    import convtools as ct  # noqa: PLC0415

    x, _, conv1, conv2 = make_problem(cfg)
    v = _teacher_goal(x, cfg, 2 * k, 0.1, cfg["seed"] + 1)
    with torch.no_grad():
        s_f, n_f = ct.statistics(x, conv1, conv2, v, kind="full")
        s_t, n_t = ct.statistics(x, conv1, conv2, v, kind="tiny")
        alpha0, omega0, _ = ct.optimal_added_parameters(s_t, n_t, max_neurons=k)
        v_sq = float((v**2).sum())
        history: list[float] = []

        def solve() -> Any:
            _, _, hist = ct.exact_neurons(
                s_f, n_f, alpha0, omega0, max_iter=max_iter, tol=tol, v_sq_norm=v_sq
            )
            history[:] = [float(t) for t in hist]

        with KernelPeakMemory() as mem:
            solve()
        res = time_single(solve, plan, "exact_neurons")
    res.update(
        peak_mb=mem.delta / MB,
        peak_reset=mem.reset,
        max_iter=max_iter,
        tol=tol,
        sweeps=len(history),
        objective_first=history[0] if history else None,
        objective_last=history[-1] if history else None,
        # history = start + one entry per accepted iteration: stopping before
        # max_iter means the improvement criterion (or a refused step) ended it
        converged=bool(len(history) - 1 < max_iter),
        monotone=all(b <= a * (1 + 1e-9) + 1e-12 for a, b in zip(history, history[1:])),
    )
    if res["time_s"] > 30:  # too slow to repeat end to end
        return res
    t0 = time.perf_counter()
    new1, new2 = ct.grow(x, conv1, conv2, v, k, method="exact")
    res["grow_s"] = time.perf_counter() - t0
    with torch.no_grad():
        res["grow_k"] = int(new1.out_channels)
        res["grow_rel_residual"] = ct.relative_residual(new2(new1(x)), v)
        tiny1, tiny2 = ct.grow(x, conv1, conv2, v, k, method="tiny")
        res["tiny_rel_residual"] = ct.relative_residual(tiny2(tiny1(x)), v)
    return res


def digits_28(n: int, dtype: Any) -> Any:
    """Handwritten digits of scikit-learn, resized to 28x28: shape (n, 1, 28, 28).

    The 1,797 8x8 digits (repeated when n is larger), resized bilinearly and standardized.
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415, N812
    from sklearn.datasets import load_digits  # noqa: PLC0415

    images = torch.from_numpy(load_digits().images).to(dtype)  # (1797, 8, 8), values 0..16
    images = images[torch.arange(n) % images.shape[0]].unsqueeze(1)
    x = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    return (x - x.mean()) / x.std()


def _residual_through(
    x: Any, v: Any, conv1: Any, conv2: Any, alpha: Any, omega: Any, activation: Any
) -> float:
    """‖v − new_conv2(σ(new_conv1(x)))‖ / ‖v‖ for the neurons (α, ω)."""
    import torch  # noqa: PLC0415

    import convtools as ct  # noqa: PLC0415

    new1, new2 = ct.layers_from_factors(alpha, omega, conv1, conv2)
    with torch.no_grad():
        return ct.relative_residual(new2(activation(new1(x))), v)


def _activation_fit() -> tuple[Any, str | None]:
    """``convtools.activation.fit_through_activation``, or (None, why it is missing)."""
    try:
        from convtools.activation import fit_through_activation  # noqa: PLC0415
    except ImportError as exc:
        return None, f"convtools.activation.fit_through_activation not available ({exc})"
    return fit_through_activation, None


def job_activation(cfg: dict, k: int, max_iter: int | None, plan: TimingPlan) -> dict:
    """Time the fit through a ReLU and its closed-form baseline, interleaved.

    x: ``cfg["n"]`` digits of 28x28 (:func:`digits_28`); v_goal: a random teacher pair with
    k channels through a ReLU, plus 10 % noise. The baseline computes the statistics and the
    closed form from x and v_goal; the fit through the activation starts from that closed
    form, computed once outside its timing (the whole path costs the sum of both).

    Returns
    -------
    dict
        ``{"routes": {name: record}, "quality": {...}}``; the activation route's record is
        ``{"status": "skipped", "reason": ...}`` when convtools has no such fit
    """
    import torch  # noqa: PLC0415

    import convtools as ct  # noqa: PLC0415

    dt = torch_dtype(cfg["dtype"])
    torch.manual_seed(cfg["seed"])
    x = digits_28(cfg["n"], dt)
    conv1 = torch.nn.Conv2d(
        cfg["c0"], cfg["c1"], cfg["k1"], padding=cfg["p1"], bias=cfg["bias"]
    ).to(dt)
    conv2 = torch.nn.Conv2d(cfg["c1"], cfg["c2"], cfg["k2"], padding=cfg["p2"], bias=False).to(dt)
    v = _teacher_goal(x, cfg, k, 0.1, cfg["seed"] + 1, activation=torch.relu)
    fit, missing = _activation_fit()
    out: dict = {"point": {}}

    def baseline() -> Any:
        with torch.no_grad():
            f = ct.fit_neurons(x, conv1, conv2, v, k, "tiny")
        return f.alpha, f.omega

    alpha0, omega0 = baseline()  # the start of the fit, computed once outside its timing

    def through() -> Any:
        options = {} if max_iter is None else {"max_iter": max_iter}
        alpha, omega, hist = fit(x, conv1, conv2, v, alpha0, omega0, torch.relu, **options)
        out["point"] = {"alpha": alpha, "omega": omega, "iterations": len(hist) - 1}
        return alpha, omega

    calls = {"tiny_closed_form": baseline}
    if fit is not None:
        calls["fit_through_activation"] = through
    routes = time_interleaved(calls, plan)
    if fit is None:
        routes["fit_through_activation"] = {"status": "skipped", "reason": missing}
    quality = {
        "tiny_rel_residual_relu": _residual_through(x, v, conv1, conv2, alpha0, omega0, torch.relu)
    }
    point = out["point"]
    if point:
        quality["fit_rel_residual_relu"] = _residual_through(
            x, v, conv1, conv2, point["alpha"], point["omega"], torch.relu
        )
        quality["fit_iterations"] = point["iterations"]
    return {"status": "ok", "routes": routes, "quality": quality}
