"""The computations compared: four routes to the growth statistics (S, N).

* ``gromo``: gromo 0.1.0's route to the TINY statistics. The mask tensor T of
  ``gromo.utils.tools.compute_mask_tensor_t`` is built once and cached outside the timing,
  then the einsums of ``FullConv2dGrowingModule``: ``masked_unfolded_prev_input``,
  ``compute_s_growth_update`` and ``compute_m_prev_update``. The masked input is computed
  once per call, where gromo's properties recompute it for each statistic: generous to
  gromo.
* ``seed``: the seed notebook's fastest formulation of the full statistics, einsums on
  X = B T (T cached).
* ``convtools``: ``convtools.statistics(x, conv1, conv2, v_goal, kind=...)``.
* ``bare``: the lower bound, one Gram matrix of a tensor built beforehand (B Bᵀ for tiny,
  X_Fᵀ X_F for full).

The ``job_*`` functions run in a child process (``benchmarks.memory.run_isolated``) and
return a dict.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.memory import KernelPeakMemory, rss_bytes
from benchmarks.problems import crop_dataset, dims, make_problem
from benchmarks.timing import TimingPlan, time_interleaved

__all__ = ["ROUTES", "checksum", "job_loader", "job_route_memory", "job_route_times", "setup_route"]

ROUTES = ("gromo", "seed", "convtools", "bare")
MB = 2**20


def checksum(out: Any) -> dict:
    """Small fingerprint of (S, N) (norms, sums, shapes), to check that routes agree."""
    import torch  # noqa: PLC0415

    if isinstance(out, torch.Tensor):
        out = (out,)
    res: dict = {}
    for name, t in zip(("S", "N"), out):
        if isinstance(t, torch.Tensor):
            t = t.detach().double()
            res[name + "_norm"] = float(t.norm())
            res[name + "_sum"] = float(t.sum())
            res[name + "_shape"] = list(t.shape)
    return res


def _unfold_ext(x: Any, conv: Any) -> Any:
    """The ``unfolded_extended_input`` of gromo: unfold, plus a ones row when conv has a bias."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415, N812

    b = F.unfold(
        x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride
    )
    if conv.bias is not None:
        b = torch.cat([b, torch.ones_like(b[:, :1])], dim=1)
    return b


def _mask_t(cfg: dict, conv2: Any, dtype: Any, info: dict) -> Any:
    """The mask tensor T of gromo, built once; its build time and size go to info."""
    from gromo.utils.tools import compute_mask_tensor_t  # noqa: PLC0415

    d = dims(cfg)
    t0 = time.perf_counter()
    t = compute_mask_tensor_t((d["h1"], d["w1"]), conv2).to(dtype)
    info["t_build_s"] = time.perf_counter() - t0
    info["t_mb"] = t.numel() * t.element_size() / MB
    return t


def _gromo_call(cfg: dict, x: Any, v: Any, conv1: Any, conv2: Any, info: dict) -> Callable:
    import torch  # noqa: PLC0415

    t = _mask_t(cfg, conv2, x.dtype, info)
    vf = v.flatten(start_dim=-2)

    def call() -> tuple:
        b = _unfold_ext(x, conv1)  # previous_module.unfolded_extended_input
        xm = torch.einsum("ial, jel -> ijea", b, t)  # masked_unfolded_prev_input
        s = torch.einsum("ijea, ijeb -> ab", xm, xm)  # compute_s_growth_update
        n = torch.einsum("ixab, icx -> bca", xm, vf).flatten(start_dim=-2)  # m_prev
        return s, n

    return call


def _seed_call(cfg: dict, x: Any, v: Any, conv1: Any, conv2: Any, info: dict) -> Callable:
    import torch  # noqa: PLC0415

    t = _mask_t(cfg, conv2, x.dtype, info)
    y = v.flatten(start_dim=-2).transpose(1, 2)  # (n, M, C[+1])
    d = dims(cfg)
    ae = d["A"] * d["E"]

    def call() -> tuple:
        b = _unfold_ext(x, conv1)
        xx = torch.einsum("ial, mbl -> imab", b, t)  # X = B T
        s = torch.einsum("imab, imcd -> abcd", xx, xx).reshape(ae, ae)
        n = torch.einsum("ixab, ixc -> abc", xx, y).reshape(ae, -1)
        return s, n

    return call


def _bare_call(cfg: dict, kind: str, x: Any, conv1: Any, conv2: Any) -> Callable:
    import torch.nn.functional as F  # noqa: PLC0415, N812

    d = dims(cfg)
    b = _unfold_ext(x, conv1)  # (n, A, L)
    if kind == "tiny":
        bf = b.transpose(0, 1).reshape(d["A"], -1).contiguous()  # (A, n L)
        return lambda: bf @ bf.T
    bimg = b.reshape(cfg["n"], d["A"], d["h1"], d["w1"])
    u = F.unfold(
        bimg, conv2.kernel_size, dilation=conv2.dilation, padding=conv2.padding, stride=conv2.stride
    )  # (n, A E, M)
    xf = u.transpose(1, 2).reshape(-1, d["A"] * d["E"]).contiguous()  # X_F
    return lambda: xf.T @ xf


def setup_route(cfg: dict, kind: str, method: str) -> tuple[Callable[[], Any], dict]:
    """Build the inputs and caches of one route; return (call, info).

    ``call()`` computes (S, N) (only S for ``bare``); ``info`` holds what the set-up
    measured (``t_build_s``, ``t_mb`` for the routes that cache T).
    """
    if method not in ROUTES:
        raise ValueError(f"unknown route {method!r}; expected one of {ROUTES}")
    x, v, conv1, conv2 = make_problem(cfg)
    info: dict = {}
    if method == "gromo":
        call = _gromo_call(cfg, x, v, conv1, conv2, info)
    elif method == "seed":
        call = _seed_call(cfg, x, v, conv1, conv2, info)
    elif method == "bare":
        call = _bare_call(cfg, kind, x, conv1, conv2)
    else:
        import convtools as ct  # noqa: PLC0415

        def call() -> tuple:
            return ct.statistics(x, conv1, conv2, v, kind=kind)

    return call, info


def job_route_memory(cfg: dict, kind: str, method: str) -> dict:
    """Peak memory of one call of one route, on top of its inputs and caches."""
    import torch  # noqa: PLC0415

    with torch.no_grad():
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        call, info = setup_route(cfg, kind, method)
        info["setup_s"] = time.perf_counter() - t0
        info["setup_mb"] = max(0.0, rss_bytes() - rss0) / MB
        with KernelPeakMemory() as mem:
            out = call()
        info["check"] = checksum(out)
        del out
    info.update(
        status="ok", peak_mb=mem.delta / MB, baseline_mb=mem.base / MB, peak_reset=mem.reset
    )
    return info


def job_route_times(cfg: dict, kind: str, methods: list[str], plan: TimingPlan) -> dict:
    """Times of several routes of one configuration, interleaved in one process."""
    import torch  # noqa: PLC0415

    out: dict = {}
    with torch.no_grad():
        calls = {}
        for m in methods:
            try:
                calls[m], _ = setup_route(cfg, kind, m)
            except Exception as exc:  # noqa: BLE001
                out[m] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        out.update(time_interleaved(calls, plan))
    return out


def job_loader(
    kind: str, n_items: int, batch: int, crop: int, workers: int, bias: bool, seed: int
) -> dict:
    """One pass of ``convtools.StatisticsAccumulator`` over a DataLoader of photo crops.

    v_goal is made per batch by a fixed random teacher pair (3 -> 4 -> 8 channels, ReLU).
    The peak memory counts from the start of the pass (one-time allocations included).
    """
    import torch  # noqa: PLC0415

    import convtools as ct  # noqa: PLC0415

    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=bias)
    conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
    teacher1 = torch.nn.Conv2d(3, 4, 3, padding=1)
    teacher2 = torch.nn.Conv2d(4, 8, 3, padding=1)
    loader = torch.utils.data.DataLoader(
        crop_dataset(n_items, crop, seed), batch_size=batch, shuffle=False, num_workers=workers
    )
    with KernelPeakMemory() as mem, torch.no_grad():
        t0 = time.perf_counter()
        acc = ct.StatisticsAccumulator(conv1, conv2, kind=kind)
        n_batches = 0
        for xb in loader:
            acc.update(xb, teacher2(torch.relu(teacher1(xb))))
            n_batches += 1
        acc.synchronize()  # no-op without torch.distributed
        elapsed = time.perf_counter() - t0
    return {
        "status": "ok",
        "time_s": elapsed,
        "peak_mb": mem.delta / MB,
        "baseline_mb": mem.base / MB,
        "peak_reset": mem.reset,
        "batches": n_batches,
        "n_samples": int(acc.n_samples),
        "check": checksum((acc.S, acc.N)),
    }
