#!/usr/bin/env python
"""Benchmark of the growth statistics between two convolutions.

Times (median of repeats) and measures the peak memory of

* gromo 0.1.0's route for the TINY statistics (S_tiny, N_tiny): the mask tensor T of
  ``gromo.utils.tools.compute_mask_tensor_t`` built once and cached, then the einsums of
  ``FullConv2dGrowingModule`` (``masked_unfolded_prev_input``, ``compute_s_growth_update``,
  ``compute_m_prev_update``);
* the seed notebook's fastest formulation of the full statistics (S_full, N_full): einsums
  on X = B T;
* ``convtools.statistics`` for both kinds;
* the bare lower bound: one Gram matrix of a tensor built beforehand (B Bᵀ of the unfolded
  input for tiny, X_Fᵀ X_F for full);

over a sweep of image sizes and channel counts, then on a full-resolution photograph, the
exact (alternating least-squares) solver, and a DataLoader run whose data set grows
tenfold while the peak memory of ``convtools.StatisticsAccumulator`` is watched.

Method (see benchmarks/README.md): every measurement runs in its own child process forked
from this one (which imports torch but computes nothing), so that no allocation of one
measurement can hide in the allocator caches of another. In the child the inputs (and any
cached tensor such as T) are built first, then the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs``) and the peak memory of a measurement is ``VmHWM`` at the end
minus ``VmRSS`` just before the first call: the memory the computation itself needs on top
of its inputs. One warm-up call is made, then ``--repeats`` timed calls (fewer when one call
takes longer than ``--budget`` seconds); the time is their median.

Usage: ``python benchmarks/run.py [--quick] [--out build/bench] [--threads 2]``.
Writes results.json, results.csv, table.txt and bench.png into the output folder.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import statistics as pystats
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Targets of the performance issue (ratios measured in one run).
TARGET_CFG = {"n": 16, "c": 16, "size": 32}  # tiny/full target: n=16, C=16, 32x32, 3x3, pad 1
TARGETS = {
    "tiny_speedup_vs_gromo": 30.0,  # at least 30x faster than gromo's einsums (T cached)
    "tiny_over_bare": 3.0,  # within 3x of the bare Gram of B
    "full_speedup_vs_seed": 3.0,  # at least 3x faster than the seed's einsum
    "full_over_bare": 2.0,  # within 2x of the bare Gram of X_F
    "photo_seconds": 10.0,  # 427x640 photograph through 3->8->8 in under 10 s ...
    "photo_peak_mb": 2048.0,  # ... and under 2 GB peak
    "exact_seconds": 2.0,  # exact solver, C=16, 3x3 and 3x3, k=4, converged, under 2 s
    # peak memory flat when the data set grows 10x: its growth under 10 % of the growth of
    # the data (storing the data, or anything proportional to it, would need 100 % or more)
    "loader_growth": 0.10,
}


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sweep and fewer repeats (about a minute)")
    p.add_argument("--out", default=str(REPO / "build" / "bench"),
                   help="output folder (default: build/bench)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per measurement after one warm-up (default 5, quick 3)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timed calls per measurement before repeats are cut "
                        "(default 8, quick 3)")
    p.add_argument("--n", type=int, default=16, help="batch size of the sweep (default 16)")
    p.add_argument("--sizes", type=_int_list, default=None,
                   help="comma-separated image sizes (default 8,16,32,64,128)")
    p.add_argument("--channels", type=_int_list, default=None,
                   help="comma-separated channel counts C[-1]=C=C[+1] (default 4,16,64)")
    p.add_argument("--bias", action="store_true", help="conv1 with a bias (A gets a ones row)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--max-gb", type=float, default=3.0,
                   help="skip gromo/seed/bare routes whose tensors would need more (GB)")
    p.add_argument("--max-gflop", type=float, default=1500.0,
                   help="skip measurements whose estimated work is larger (GFLOP per call)")
    p.add_argument("--sections", default="sweep,photo,exact,loader",
                   help="comma-separated subset of sweep,photo,exact,loader")
    p.add_argument("--loader-items", type=int, default=None,
                   help="crops of the small data set of the DataLoader section (10x for the "
                        "large one; default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds before one measurement's child process is killed")
    p.add_argument("--omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY for the run (default PASSIVE: idle OpenMP threads "
                        "sleep instead of spinning, which on a shared machine keeps a spinning "
                        "thread from starving its partner; 'inherit' leaves the environment)")
    p.add_argument("--convtools-path", default=None,
                   help="import convtools from this folder instead (e.g. to measure a patch)")
    p.add_argument("--no-plot", action="store_true")
    a = p.parse_args(argv)
    if a.threads < 1:
        p.error("--threads must be >= 1")
    if a.repeats is None:
        a.repeats = 3 if a.quick else 5
    if a.budget is None:
        a.budget = 3.0 if a.quick else 8.0
    if a.sizes is None:
        a.sizes = [8, 16, 32] if a.quick else [8, 16, 32, 64, 128]
    if a.channels is None:
        a.channels = [4, 16] if a.quick else [4, 16, 64]
    if a.loader_items is None:
        a.loader_items = 256
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = set(a.sections) - {"sweep", "photo", "exact", "loader"}
    if bad:
        p.error(f"unknown section(s) {sorted(bad)}")
    return a


ARGS: argparse.Namespace | None = None  # set in main, inherited by forked children

# --------------------------------------------------------------------------------------
# memory probes (Linux /proc; getrusage as fallback)
# --------------------------------------------------------------------------------------
_HAVE_PROC = os.path.exists("/proc/self/status")


def _proc_kb(key: str) -> float | None:
    if not _HAVE_PROC:
        return None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return None


def rss_mb() -> float:
    kb = _proc_kb("VmRSS")
    if kb is not None:
        return kb / 1024
    import psutil  # noqa: PLC0415  (fallback off Linux)

    return psutil.Process().memory_info().rss / 2**20


def peak_mb() -> float:
    kb = _proc_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    import resource  # noqa: PLC0415

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process to its current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------
def _child_main(conn, job: str, kwargs: dict) -> None:
    try:
        import torch

        torch.set_num_threads(ARGS.threads)
        torch.manual_seed(ARGS.seed)
        res = JOBS[job](**kwargs)
    except BaseException as exc:  # report anything, including MemoryError
        tb = traceback.format_exc(limit=3).strip().splitlines()
        res = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300],
               "traceback": tb[-3:]}
    try:
        conn.send(res)
    finally:
        conn.close()


def run_isolated(job: str, **kwargs) -> dict:
    """Run JOBS[job](**kwargs) in a fresh child process and return its result dict."""
    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, job, kwargs), daemon=True)
    proc.start()
    send.close()
    res = None
    try:
        if recv.poll(ARGS.timeout):
            res = recv.recv()
    except EOFError:
        res = None
    if res is None:
        if proc.is_alive():
            proc.kill()
            res = {"status": "error", "reason": f"timeout after {ARGS.timeout:.0f} s"}
        proc.join()
        if res is None:
            res = {"status": "error",
                   "reason": f"child died (exit code {proc.exitcode}; -9 means killed, "
                             "e.g. out of memory)"}
    else:
        proc.join()
    return res


def _measure(call, budget: float, repeats: int) -> dict:
    """Warm-up call, then timed calls; peak memory over all calls above the baseline."""
    gc.collect()
    reset_ok = reset_peak()
    base = rss_mb()
    t0 = time.perf_counter()
    out = call()
    t_warm = time.perf_counter() - t0
    check = _checksum(out)
    del out
    times = []
    n_rep = repeats if t_warm * repeats <= budget else max(0, int(budget // max(t_warm, 1e-9)))
    for _ in range(n_rep):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
        del out
    timed = times if times else [t_warm]
    return {
        "status": "ok",
        "time_s": pystats.median(timed),
        "times_s": timed,
        "warmup_s": t_warm,
        "repeats": len(times),
        "peak_mb": max(0.0, peak_mb() - base),
        "baseline_mb": base,
        "peak_reset": reset_ok,
        "check": check,
    }


def _checksum(out) -> dict:
    """Small fingerprint of (S, N) used to check that the routes agree."""
    import torch

    if isinstance(out, torch.Tensor):
        out = (out,)
    res = {}
    for name, t in zip(("S", "N"), out):
        if isinstance(t, torch.Tensor):
            t = t.detach().double()
            res[name + "_norm"] = float(t.norm())
            res[name + "_sum"] = float(t.sum())
            res[name + "_shape"] = list(t.shape)
    return res


# --------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------
def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def _sample_photos():
    """The two 427x640 RGB photographs shipped with scikit-learn, as (2, 3, 427, 640) in [0, 1]."""
    import numpy as np
    import torch
    from sklearn.datasets import load_sample_images

    imgs = np.stack(load_sample_images().images)  # (2, 427, 640, 3) uint8
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()


def make_problem(cfg: dict):
    """x, v_goal, conv1, conv2 for a configuration dict."""
    import torch

    dt = _dtype(cfg["dtype"])
    g = torch.Generator().manual_seed(cfg.get("seed", 0))
    conv1 = torch.nn.Conv2d(cfg["c0"], cfg["c1"], cfg["k1"], padding=cfg["p1"],
                            bias=cfg["bias"]).to(dt)
    conv2 = torch.nn.Conv2d(cfg["c1"], cfg["c2"], cfg["k2"], padding=cfg["p2"],
                            bias=False).to(dt)
    if cfg.get("data") == "photo":
        photos = _sample_photos()[: cfg["n"]].to(dt) / 255.0
        x = (photos - photos.mean(dim=(0, 2, 3), keepdim=True)) / photos.std()
    else:
        x = torch.randn(cfg["n"], cfg["c0"], cfg["h"], cfg["w"], generator=g, dtype=dt)
    with torch.no_grad():
        h2, w2 = conv2(conv1(x[:1])).shape[-2:]
    v = torch.randn(cfg["n"], cfg["c2"], h2, w2, generator=g, dtype=dt)
    return x, v, conv1, conv2


def dims(cfg: dict) -> dict:
    """Sizes of the problem: A, E, L (intermediate positions), M (output positions)."""
    def out(s, k, p):
        return s + 2 * p - k + 1

    h1, w1 = out(cfg["h"], cfg["k1"], cfg["p1"]), out(cfg["w"], cfg["k1"], cfg["p1"])
    h2, w2 = out(h1, cfg["k2"], cfg["p2"]), out(w1, cfg["k2"], cfg["p2"])
    a = cfg["c0"] * cfg["k1"] ** 2 + (1 if cfg["bias"] else 0)
    return {"A": a, "E": cfg["k2"] ** 2, "L": h1 * w1, "M": h2 * w2, "C": cfg["c2"],
            "n": cfg["n"], "h1": h1, "w1": w1}


def estimate(cfg: dict, kind: str, method: str) -> tuple[float, float]:
    """(bytes of the tensors a route materializes, floating-point operations per call)."""
    d = dims(cfg)
    n, a, e, l_, m, c = d["n"], d["A"], d["E"], d["L"], d["M"], d["C"]
    item = 4 if cfg["dtype"] == "float32" else 8
    t_size = m * e * l_
    x_size = n * m * e * a
    if method == "gromo":  # T, X = B T (plus one permuted copy), B
        return item * (t_size + 2 * x_size + n * a * l_), \
            2.0 * n * a * l_ * m * e + 2.0 * n * m * e * a * a + 2.0 * n * m * e * a * c
    if method == "seed":
        return item * (t_size + 2 * x_size + (a * e) ** 2), \
            2.0 * n * a * l_ * m * e + 2.0 * n * m * (a * e) ** 2 + 2.0 * n * m * a * e * c
    if method == "bare":
        if kind == "tiny":
            return item * (n * a * l_ + a * a), 2.0 * n * l_ * a * a
        return item * (x_size + (a * e) ** 2), 2.0 * n * m * (a * e) ** 2
    # convtools: nothing of size T; work of one Gram plus N
    if kind == "tiny":
        return item * (2 * n * a * l_), 2.0 * n * l_ * a * a + 2.0 * n * m * c * a * e
    return item * (2 * x_size), 2.0 * n * m * (a * e) ** 2 + 2.0 * n * m * a * e * c


# --------------------------------------------------------------------------------------
# the routes
# --------------------------------------------------------------------------------------
def _unfold_ext(x, conv):
    """gromo's unfolded_extended_input: unfold, plus a ones row when conv has a bias."""
    import torch
    import torch.nn.functional as F

    b = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                 stride=conv.stride)
    if conv.bias is not None:
        b = torch.cat([b, torch.ones_like(b[:, :1])], dim=1)
    return b


def _mask_t(cfg, conv2, dt):
    from gromo.utils.tools import compute_mask_tensor_t

    d = dims(cfg)
    return compute_mask_tensor_t((d["h1"], d["w1"]), conv2).to(dt)


def setup_route(cfg: dict, kind: str, method: str):
    """Build inputs and caches; return (call, info)."""
    import torch
    import torch.nn.functional as F

    x, v, conv1, conv2 = make_problem(cfg)
    d = dims(cfg)
    dt = x.dtype
    info: dict = {}
    if method == "gromo":  # TINY statistics, FullConv2dGrowingModule's einsums, T cached
        t0 = time.perf_counter()
        T = _mask_t(cfg, conv2, dt)
        info["t_build_s"] = time.perf_counter() - t0
        info["t_mb"] = T.numel() * T.element_size() / 2**20
        vf = v.flatten(start_dim=-2)

        def call():
            b = _unfold_ext(x, conv1)  # previous_module.unfolded_extended_input
            xm = torch.einsum("ial, jel -> ijea", b, T)  # masked_unfolded_prev_input
            s = torch.einsum("ijea, ijeb -> ab", xm, xm)  # compute_s_growth_update
            nn_ = torch.einsum("ixab, icx -> bca", xm, vf).flatten(start_dim=-2)  # m_prev
            return s, nn_
    elif method == "seed":  # full statistics, the seed's einsums on X = B T
        t0 = time.perf_counter()
        T = _mask_t(cfg, conv2, dt)
        info["t_build_s"] = time.perf_counter() - t0
        info["t_mb"] = T.numel() * T.element_size() / 2**20
        y = v.flatten(start_dim=-2).transpose(1, 2)  # (n, M, C[+1])
        ae = d["A"] * d["E"]

        def call():
            b = _unfold_ext(x, conv1)
            xx = torch.einsum("ial, mbl -> imab", b, T)  # X = B T
            s = torch.einsum("imab, imcd -> abcd", xx, xx).reshape(ae, ae)
            nn_ = torch.einsum("ixab, ixc -> abc", xx, y).reshape(ae, -1)
            return s, nn_
    elif method == "bare":  # one Gram matrix of a tensor built beforehand
        b = _unfold_ext(x, conv1)  # (n, A, L)
        if kind == "tiny":
            bf = b.transpose(0, 1).reshape(d["A"], -1).contiguous()  # (A, n L)
            del b

            def call():
                return bf @ bf.T
        else:
            bimg = b.reshape(cfg["n"], d["A"], d["h1"], d["w1"])
            u = F.unfold(bimg, conv2.kernel_size, dilation=conv2.dilation,
                         padding=conv2.padding, stride=conv2.stride)  # (n, A E, M)
            xf = u.transpose(1, 2).reshape(-1, d["A"] * d["E"]).contiguous()  # X_F
            del b, bimg, u

            def call():
                return xf.T @ xf
    elif method == "convtools":
        import convtools as ct

        def call():
            return ct.statistics(x, conv1, conv2, v, kind=kind)
    else:
        raise ValueError(method)
    return call, info


def job_route_memory(cfg: dict, kind: str, method: str) -> dict:
    """Peak memory of one call of one route, in a process of its own."""
    import torch

    with torch.no_grad():
        rss0 = rss_mb()
        t0 = time.perf_counter()
        call, info = setup_route(cfg, kind, method)
        info["setup_s"] = time.perf_counter() - t0
        gc.collect()
        info["setup_mb"] = max(0.0, rss_mb() - rss0)
        reset_ok = reset_peak()
        base = rss_mb()
        out = call()
        info["peak_mb"] = max(0.0, peak_mb() - base)
        info["check"] = _checksum(out)
        del out
    info.update(status="ok", baseline_mb=base, peak_reset=reset_ok)
    return info


def job_route_times(cfg: dict, kind: str, methods: list[str]) -> dict:
    """Times of several routes of one configuration, interleaved in one process.

    One warm-up call each, then rounds of one call per route, so that a change of load on
    the machine hits every route alike and the ratios stay meaningful. At least
    ``--repeats`` rounds and at least 0.3 s of calls per route (at most 100 rounds), but
    no further round once the timed calls would pass ``--budget`` seconds per route
    (always at least one timed round).
    """
    import torch

    out: dict = {}
    with torch.no_grad():
        calls = {}
        for m in methods:
            try:
                calls[m], _ = setup_route(cfg, kind, m)
            except Exception as exc:  # noqa: BLE001
                out[m] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        times: dict = {m: [] for m in calls}
        cpu: dict = {m: [] for m in calls}  # process CPU time (all threads) of each call
        warm: dict = {}
        for m, call in list(calls.items()):
            t0 = time.perf_counter()
            try:
                res = call()
            except Exception as exc:  # noqa: BLE001
                out[m] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}
                del calls[m], times[m], cpu[m]
                continue
            warm[m] = time.perf_counter() - t0
            del res
        rounds = 0
        while calls and rounds < 100:
            if rounds >= ARGS.repeats and all(sum(t) >= 0.3 for t in times.values()):
                break
            spent = sum(sum(t) for t in times.values())
            next_round = sum((times[m][-1] if times[m] else warm[m]) for m in calls)
            if rounds >= 1 and spent + next_round > ARGS.budget * len(calls):
                break
            for m, call in calls.items():
                c0, t0 = time.process_time(), time.perf_counter()
                res = call()
                times[m].append(time.perf_counter() - t0)
                cpu[m].append(time.process_time() - c0)
                del res
            rounds += 1
        for m in calls:
            t = times[m] or [warm[m]]
            out[m] = {"status": "ok", "time_s": pystats.median(t), "time_min_s": min(t),
                      "repeats": len(times[m]), "warmup_s": warm[m],
                      "cpu_s": pystats.median(cpu[m]) if cpu[m] else None}
    return out


# --------------------------------------------------------------------------------------
# exact solver
# --------------------------------------------------------------------------------------
def job_exact(cfg: dict, k: int, max_iter: int, tol: float) -> dict:
    """Time ct.exact_neurons (from the TINY start) and ct.grow(method="exact")."""
    import torch

    import convtools as ct

    x, _, conv1, conv2 = make_problem(cfg)
    dt = x.dtype
    g = torch.Generator().manual_seed(cfg.get("seed", 0) + 1)
    # planted target: a random teacher conv pair with 2k intermediate channels, plus noise
    t1 = torch.nn.Conv2d(cfg["c0"], 2 * k, cfg["k1"], padding=cfg["p1"], bias=cfg["bias"]).to(dt)
    t2 = torch.nn.Conv2d(2 * k, cfg["c2"], cfg["k2"], padding=cfg["p2"], bias=False).to(dt)
    with torch.no_grad():
        v = t2(t1(x))
        v = v + 0.1 * v.std() * torch.randn(v.shape, generator=g, dtype=dt)
        s_f, n_f = ct.statistics(x, conv1, conv2, v, kind="full")
        s_t, n_t = ct.statistics(x, conv1, conv2, v, kind="tiny")
        alpha0, omega0, _ = ct.optimal_added_parameters(s_t, n_t, max_neurons=k)
        v_sq = float((v**2).sum())
        hist_holder = {}

        def solve():
            a, o, h = ct.exact_neurons(s_f, n_f, alpha0, omega0, max_iter=max_iter, tol=tol,
                                       v_sq_norm=v_sq)
            hist_holder["h"] = [float(t) for t in h]
            return a, o

        res = _measure(solve, ARGS.budget, ARGS.repeats)
        hist = hist_holder["h"]
        res["sweeps"] = len(hist)
        res["objective_first"] = hist[0] if hist else None
        res["objective_last"] = hist[-1] if hist else None
        res["rel_change_last"] = (abs(hist[-2] - hist[-1]) / max(abs(hist[-2]), 1e-300)
                                  if len(hist) > 1 else None)
        # history = start + one entry per accepted sweep: stopping before max_iter sweeps
        # means the improvement criterion (or a refused step) ended the iteration
        res["converged"] = bool(len(hist) - 1 < max_iter)
        res["monotone"] = all(b <= a_ * (1 + 1e-9) + 1e-12 for a_, b in zip(hist, hist[1:]))
        res["max_iter"] = max_iter
        res["tol"] = tol
        if res["time_s"] > 30:  # too slow to repeat end to end
            return res
        # the whole path from the data: statistics + TINY start + solver + layers
        t0 = time.perf_counter()
        out = ct.grow(x, conv1, conv2, v, k, method="exact", return_info=True)
        res["grow_s"] = time.perf_counter() - t0
        c1n, c2n = out[0], out[1]
        res["grow_k"] = int(c1n.out_channels)
        res["grow_rel_residual"] = float(ct.relative_residual(c2n(c1n(x)), v))
        o_t = ct.grow(x, conv1, conv2, v, k, method="tiny")
        res["tiny_rel_residual"] = float(ct.relative_residual(o_t[1](o_t[0](x)), v))
    res["max_iter"] = max_iter
    res["tol"] = tol
    return res


# --------------------------------------------------------------------------------------
# DataLoader: lazily generated random crops of the sample photographs
# --------------------------------------------------------------------------------------
def _crop_dataset(n_items: int, crop: int, seed: int):
    import torch

    class RandomCrops(torch.utils.data.Dataset):
        """n_items random crops (with random flips) of the sample photographs, made on demand."""

        def __init__(self):
            self.photos = _sample_photos()  # (2, 3, 427, 640) uint8, the only stored data

        def __len__(self):
            return n_items

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(seed * 1_000_003 + int(i))
            p = int(torch.randint(0, self.photos.shape[0], (1,), generator=g))
            top = int(torch.randint(0, self.photos.shape[2] - crop + 1, (1,), generator=g))
            left = int(torch.randint(0, self.photos.shape[3] - crop + 1, (1,), generator=g))
            img = self.photos[p, :, top:top + crop, left:left + crop].float() / 255.0
            if bool(torch.rand((), generator=g) < 0.5):
                img = img.flip(-1)
            return (img - 0.5) / 0.25

    return RandomCrops()


def job_loader(kind: str, n_items: int, batch: int, crop: int, workers: int) -> dict:
    import torch

    import convtools as ct

    torch.manual_seed(ARGS.seed)
    conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=ARGS.bias)
    conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
    teacher1 = torch.nn.Conv2d(3, 4, 3, padding=1)  # fixed random teacher pair for v_goal
    teacher2 = torch.nn.Conv2d(4, 8, 3, padding=1)
    ds = _crop_dataset(n_items, crop, ARGS.seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False,
                                         num_workers=workers)
    gc.collect()
    reset_ok = reset_peak()
    base = rss_mb()
    t0 = time.perf_counter()
    with torch.no_grad():
        acc = ct.StatisticsAccumulator(conv1, conv2, kind=kind)
        n_batches = 0
        for xb in loader:
            v = teacher2(torch.relu(teacher1(xb)))  # v_goal generated per batch
            acc.update(xb, v)
            n_batches += 1
        acc.synchronize()  # no-op without torch.distributed
    elapsed = time.perf_counter() - t0
    return {"status": "ok", "time_s": elapsed, "peak_mb": max(0.0, peak_mb() - base),
            "baseline_mb": base, "peak_reset": reset_ok, "batches": n_batches,
            "n_samples": int(acc.n_samples), "check": _checksum((acc.S, acc.N))}


JOBS = {"route_memory": job_route_memory, "route_times": job_route_times, "exact": job_exact,
        "loader": job_loader}


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
def _cfg(n, c0, c1, c2, h, w, *, data="random") -> dict:
    return {"n": n, "c0": c0, "c1": c1, "c2": c2, "h": h, "w": w, "k1": 3, "k2": 3,
            "p1": 1, "p2": 1, "bias": ARGS.bias, "dtype": ARGS.dtype, "seed": ARGS.seed,
            "data": data}


def _route_records(section: str, cfg: dict, kind: str, methods: list[str]) -> list[dict]:
    """Records of several routes of one configuration: times together, memory apart."""
    recs = []
    for method in methods:
        mem, flop = estimate(cfg, kind, method)
        rec = {"section": section, "kind": kind, "method": method, **cfg,
               "est_gb": mem / 1e9, "est_gflop": flop / 1e9}
        reason = None
        if method in ("gromo", "seed", "bare") and mem > ARGS.max_gb * 1e9:
            reason = f"needs {mem / 1e9:.3g} GB (> --max-gb {ARGS.max_gb:g})"
        elif flop > ARGS.max_gflop * 1e9:
            reason = f"needs {flop / 1e9:.3g} GFLOP per call (> --max-gflop {ARGS.max_gflop:g})"
        rec.update(status="skipped", reason=reason) if reason else rec.update(status="ok")
        recs.append(rec)
    todo = [r for r in recs if r["status"] == "ok"]
    if todo:
        times = run_isolated("route_times", cfg=cfg, kind=kind,
                             methods=[r["method"] for r in todo])
        for r in todo:
            if r["method"] not in times:  # the child failed
                r.update(status="error", reason=times.get("reason", "no result"))
                continue
            r.update(times[r["method"]])
            if r["status"] != "ok":
                continue
            m = run_isolated("route_memory", cfg=cfg, kind=kind, method=r["method"])
            if m.get("status") != "ok":
                r.update(peak_status="error", peak_reason=m.get("reason"))
            else:
                m.pop("status")
                r.update(m)
    for r in recs:
        _progress(r)
    return recs


def _progress(rec: dict) -> None:
    what = f"{rec['section']:6s} {rec.get('kind', ''):5s} {rec.get('method', ''):9s}"
    if "h" in rec:
        what += f" n={rec['n']} C={rec['c0']}->{rec['c1']}->{rec['c2']} {rec['h']}x{rec['w']}"
    if rec["status"] == "ok":
        peak = f"{rec['peak_mb']:8.1f} MB" if "peak_mb" in rec else "   (error)"
        msg = f"{rec['time_s'] * 1e3:10.2f} ms  peak {peak}"
    else:
        msg = f"{rec['status']}: {rec.get('reason', '')}"
    print(f"  {what:55s} {msg}", flush=True)


def section_sweep(records: list) -> None:
    print("sweep: image sizes x channel counts", flush=True)
    for c in ARGS.channels:
        for s in ARGS.sizes:
            cfg = _cfg(ARGS.n, c, c, c, s, s)
            for kind, ref in (("tiny", "gromo"), ("full", "seed")):
                records += _route_records("sweep", cfg, kind, [ref, "convtools", "bare"])


def section_photo(records: list) -> None:
    print("photo: 427x640 RGB photograph through 3->8->8 channels", flush=True)
    cfg = _cfg(1, 3, 8, 8, 427, 640, data="photo")
    for kind, ref in (("tiny", "gromo"), ("full", "seed")):
        records += _route_records("photo", cfg, kind, [ref, "convtools", "bare"])


def section_exact(records: list) -> None:
    print("exact: ct.exact_neurons, C[-1]=C[+1]=16, 3x3 and 3x3, k=4", flush=True)
    cfg = _cfg(16, 16, 16, 16, 32, 32)
    cfg["dtype"] = "float64"
    rec = {"section": "exact", "kind": "full", "method": "exact_neurons", **cfg, "k": 4}
    rec.update(run_isolated("exact", cfg=cfg, k=4, max_iter=500, tol=1e-10))
    _progress(rec)
    records.append(rec)


def section_loader(records: list) -> None:
    print("loader: StatisticsAccumulator over a DataLoader of random photo crops", flush=True)
    for kind in ("tiny", "full"):
        for factor in (1, 10):
            n_items = ARGS.loader_items * factor
            rec = {"section": "loader", "kind": kind, "method": "accumulator",
                   "n_items": n_items, "batch": 16, "crop": 64, "workers": 0}
            rec.update(run_isolated("loader", kind=kind, n_items=n_items, batch=16,
                                    crop=64, workers=0))
            _progress(rec)
            records.append(rec)


# --------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------
def _find(records, **kw):
    for r in records:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _ms(r) -> str:
    if r is None:
        return "-"
    if r["status"] == "ok":
        t = r["time_s"] * 1e3
        return f"{t:.3g}" if t < 1000 else f"{t:.0f}"
    if r["status"] == "skipped":
        return f"skip({r['est_gb']:.3g}GB)" if "GB" in r["reason"] else \
            f"skip({r['est_gflop']:.0f}GF)"
    return "error"


def _mb(r) -> str:
    if r is None or r["status"] != "ok" or "peak_mb" not in r:
        return "-"
    return f"{r['peak_mb']:.3g}"


def _ratio(a, b) -> float | None:
    if a is None or b is None or a.get("status") != "ok" or b.get("status") != "ok":
        return None
    return a["time_s"] / b["time_s"] if b["time_s"] > 0 else None


def _cpu_ratio(a, b) -> float | None:
    if a is None or b is None or not a.get("cpu_s") or not b.get("cpu_s"):
        return None
    return a["cpu_s"] / b["cpu_s"]


def _fmt(x, suffix="x") -> str:
    return "-" if x is None else f"{x:.3g}{suffix}"


def table_lines(records: list) -> list[str]:
    lines = []
    for section in ("sweep", "photo"):
        for kind, ref in (("tiny", "gromo"), ("full", "seed")):
            rows = [r for r in records if r["section"] == section and r["kind"] == kind
                    and r["method"] == "convtools"]
            if not rows:
                continue
            refname = "gromo (T cached)" if ref == "gromo" else "seed einsum"
            lines.append("")
            lines.append(f"{section}: {kind} statistics, {ARGS.dtype}, {ARGS.threads} threads; "
                         f"times in ms (median wall clock), peak = extra MB above inputs, "
                         f"cpu = ratios of process CPU time")
            head = (f"{'n':>3} {'C':>10} {'HxW':>8} | {refname[:16]:>16} {'ours':>8} "
                    f"{'bare':>8} | {ref + '/ours':>10} {'ours/bare':>9} | "
                    f"{'peak ' + ref:>11} {'peak ours':>9} {'peak bare':>9} | "
                    f"{'cpu: ' + ref + '/ours':>15} {'ours/bare':>9}")
            lines.append(head)
            lines.append("-" * len(head))
            for r in rows:
                key = {k: r[k] for k in ("section", "kind", "n", "c0", "c1", "c2", "h", "w")}
                rr = _find(records, method=ref, **key)
                rb = _find(records, method="bare", **key)
                cstr = f"{r['c0']}>{r['c1']}>{r['c2']}"
                lines.append(
                    f"{r['n']:>3} {cstr:>10} {str(r['h']) + 'x' + str(r['w']):>8} | "
                    f"{_ms(rr):>16} {_ms(r):>8} {_ms(rb):>8} | "
                    f"{_fmt(_ratio(rr, r)):>10} {_fmt(_ratio(r, rb)):>9} | "
                    f"{_mb(rr):>11} {_mb(r):>9} {_mb(rb):>9} | "
                    f"{_fmt(_cpu_ratio(rr, r)):>15} {_fmt(_cpu_ratio(r, rb)):>9}")
    ex = [r for r in records if r["section"] == "exact"]
    for r in ex:
        lines.append("")
        lines.append("exact solver (ct.exact_neurons from the TINY start), n=16, C=16, 32x32, "
                     "3x3 then 3x3, k=4, float64")
        if r["status"] == "ok":
            lines.append(
                f"  {r['time_s']:.3g} s, {r['sweeps']} sweeps (max {r['max_iter']}, tol "
                f"{r['tol']:g}), converged={r['converged']}, monotone={r['monotone']}, "
                f"objective {r['objective_first']:.4g} -> {r['objective_last']:.4g}")
            if "grow_s" in r:
                lines.append(
                    f"  ct.grow(method='exact') end to end {r['grow_s']:.3g} s, "
                    f"k={r['grow_k']}, relative residual {r['grow_rel_residual']:.3g} "
                    f"(tiny: {r['tiny_rel_residual']:.3g})")
        else:
            lines.append(f"  {r['status']}: {r.get('reason')}")
    ld = [r for r in records if r["section"] == "loader"]
    if ld:
        lines.append("")
        lines.append("DataLoader of lazily generated 64x64 random crops of the sample "
                     "photographs, 3->8->8, batch 16, v_goal from a fixed teacher conv pair "
                     "(data MB: the crops' size if they were stored, float32)")
        lines.append(f"{'kind':>5} {'crops':>6} {'data MB':>8} {'batches':>7} {'time s':>8} "
                     f"{'peak MB':>8}")
        for r in ld:
            data_mb = r["n_items"] * 3 * r["crop"] ** 2 * 4 / 2**20  # if it were stored
            if r["status"] == "ok":
                lines.append(f"{r['kind']:>5} {r['n_items']:>6} {data_mb:>8.3g} "
                             f"{r['batches']:>7} {r['time_s']:>8.3g} {r['peak_mb']:>8.3g}")
            else:
                lines.append(f"{r['kind']:>5} {r['n_items']:>6} {r['status']}: {r.get('reason')}")
    return lines


def check_agreement(records: list) -> list[str]:
    """Compare the (S, N) fingerprints of routes that compute the same statistics."""
    msgs = []
    tol = 1e-3 if ARGS.dtype == "float32" else 1e-8
    for r in records:
        if r.get("method") != "convtools" or r["status"] != "ok":
            continue
        key = {k: r[k] for k in ("section", "kind", "n", "c0", "c1", "c2", "h", "w")}
        ref = _find(records, method="gromo" if r["kind"] == "tiny" else "seed", **key)
        pairs = [(ref, ("S_norm", "S_sum", "N_norm", "N_sum"))]
        if r["kind"] == "full":
            pairs.append((_find(records, method="bare", **key), ("S_norm", "S_sum")))
        for other, keys in pairs:
            if other is None or other["status"] != "ok":
                continue
            for k in keys:
                a, b = r["check"].get(k), other["check"].get(k)
                if a is None or b is None:
                    continue
                scale = max(abs(b), r["check"].get(k.split("_")[0] + "_norm", 0.0), 1e-30)
                if abs(a - b) > tol * scale:
                    msgs.append(f"MISMATCH {r['section']} {r['kind']} {r['c0']}ch "
                                f"{r['h']}x{r['w']} {k}: convtools {a:.6g} vs "
                                f"{other['method']} {b:.6g}")
    return msgs


def evaluate_targets(records: list) -> list[dict]:
    out = []
    tc = TARGET_CFG

    def key(kind):
        return {"section": "sweep", "kind": kind, "n": tc["n"], "c0": tc["c"], "h": tc["size"]}

    cfgtxt = f"n={tc['n']}, C={tc['c']}, {tc['size']}x{tc['size']}, 3x3 pad 1"

    def add(name, value, goal, better, text, cpu_value=None):
        ok = None if value is None else (value >= goal if better == ">=" else value <= goal)
        out.append({"target": name, "value": value, "goal": goal, "sense": better,
                    "holds": ok, "text": text, "cpu_value": cpu_value})

    for kind, ref, refname, barename in (("tiny", "gromo", "gromo (T cached)", "B"),
                                         ("full", "seed", "seed einsum", "X_F")):
        ours = _find(records, method="convtools", **key(kind))
        r_ref = _find(records, method=ref, **key(kind))
        r_bare = _find(records, method="bare", **key(kind))
        add(f"{kind}_speedup_vs_{ref}", _ratio(r_ref, ours),
            TARGETS[f"{kind}_speedup_vs_{ref}"], ">=", f"{kind} {cfgtxt}: {refname} / ours",
            _cpu_ratio(r_ref, ours))
        add(f"{kind}_over_bare", _ratio(ours, r_bare), TARGETS[f"{kind}_over_bare"], "<=",
            f"{kind} {cfgtxt}: ours / bare Gram of {barename}", _cpu_ratio(ours, r_bare))
    for kind in ("tiny", "full"):
        r = _find(records, section="photo", kind=kind, method="convtools")
        ok = r is not None and r["status"] == "ok"
        add(f"photo_{kind}_seconds", r["time_s"] if ok else None, TARGETS["photo_seconds"], "<=",
            f"photo 427x640 3->8->8 {kind}: seconds")
        add(f"photo_{kind}_peak_mb", r["peak_mb"] if ok else None, TARGETS["photo_peak_mb"],
            "<=", f"photo 427x640 3->8->8 {kind}: peak MB")
    r = _find(records, section="exact")
    ok = r is not None and r["status"] == "ok"
    add("exact_seconds", r["time_s"] if ok and r["converged"] else None,
        TARGETS["exact_seconds"], "<=", "exact solver C=16, 3x3/3x3, k=4, converged: seconds")
    for kind in ("tiny", "full"):
        a = _find(records, section="loader", kind=kind, n_items=ARGS.loader_items)
        b = _find(records, section="loader", kind=kind, n_items=10 * ARGS.loader_items)
        val = None
        if a and b and a["status"] == "ok" and b["status"] == "ok":
            added = (b["n_items"] - a["n_items"]) * 3 * b["crop"] ** 2 * 4 / 2**20
            val = max(0.0, b["peak_mb"] - a["peak_mb"]) / added
        add(f"loader_{kind}_growth", val, TARGETS["loader_growth"], "<=",
            f"DataLoader {kind}: peak growth / data growth (float32 crops) at 10x data")
    # the full-statistics targets over the whole sweep, for information
    for r in records:
        if r["section"] == "sweep" and r["kind"] == "full" and r["method"] == "convtools":
            k = {kk: r[kk] for kk in ("section", "kind", "n", "c0", "h")}
            r["speedup_vs_ref"] = _ratio(_find(records, method="seed", **k), r)
            r["over_bare"] = _ratio(r, _find(records, method="bare", **k))
        if r["section"] == "sweep" and r["kind"] == "tiny" and r["method"] == "convtools":
            k = {kk: r[kk] for kk in ("section", "kind", "n", "c0", "h")}
            r["speedup_vs_ref"] = _ratio(_find(records, method="gromo", **k), r)
            r["over_bare"] = _ratio(r, _find(records, method="bare", **k))
    return out


def write_outputs(records: list, targets: list, lines: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "platform": platform.platform(),
            "threads": ARGS.threads, "dtype": ARGS.dtype, "repeats": ARGS.repeats,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "budget_s": ARGS.budget, "quick": ARGS.quick, "bias": ARGS.bias,
            "peak_memory_method": "fork per measurement; /proc/self/clear_refs reset; "
                                  "VmHWM - VmRSS before first call",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        import torch

        meta["torch"] = torch.__version__
        import gromo  # noqa: F401
        from importlib.metadata import version

        meta["gromo"] = version("gromo")
    except Exception:  # noqa: BLE001
        pass
    with open(out / "results.json", "w") as f:
        json.dump({"meta": meta, "targets": targets, "records": records}, f, indent=1,
                  default=str)
    cols = ["section", "kind", "method", "n", "c0", "c1", "c2", "h", "w", "dtype", "status",
            "time_s", "cpu_s", "repeats", "peak_mb", "setup_mb", "t_mb", "t_build_s", "est_gb",
            "est_gflop", "speedup_vs_ref", "over_bare", "n_items", "batches", "sweeps",
            "converged", "reason"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: r.get(k, "") for k in cols})
    (out / "table.txt").write_text("\n".join(lines) + "\n")


def plot(records: list, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    styles = {"gromo": ("s", ":"), "seed": ("s", ":"), "convtools": ("o", "-"),
              "bare": ("^", "--")}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, kind in enumerate(("tiny", "full")):
        for ci, c in enumerate(ARGS.channels):
            for method in (("gromo" if kind == "tiny" else "seed"), "convtools", "bare"):
                rs = [r for r in records if r["section"] == "sweep" and r["kind"] == kind
                      and r["method"] == method and r["c0"] == c and r["status"] == "ok"]
                if not rs:
                    continue
                px = [r["h"] * r["w"] for r in rs]
                mk, ls = styles[method]
                lab = f"{method}, C={c}"
                axes[0, col].loglog(px, [r["time_s"] for r in rs], marker=mk, ls=ls,
                                    color=colors[ci % len(colors)], label=lab)
                axes[1, col].loglog(px, [max(r["peak_mb"], 1e-2) for r in rs], marker=mk,
                                    ls=ls, color=colors[ci % len(colors)], label=lab)
        axes[0, col].set_title(f"{kind} statistics: time (n={ARGS.n})")
        axes[0, col].set_ylabel("seconds (median)")
        axes[1, col].set_title(f"{kind} statistics: peak memory above inputs")
        axes[1, col].set_ylabel("MB")
        for ax in axes[:, col]:
            ax.set_xlabel("pixels H x W")
            ax.grid(True, which="both", alpha=0.3)
        if axes[0, col].get_legend_handles_labels()[0]:
            axes[0, col].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ARGS = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
    if ARGS.omp_wait_policy.lower() != "inherit":
        os.environ["OMP_WAIT_POLICY"] = ARGS.omp_wait_policy  # read when OpenMP starts
    if ARGS.convtools_path:
        sys.path.insert(0, str(Path(ARGS.convtools_path).resolve()))
    import torch  # noqa: F401  (imported once here so that forked children start warm)

    import convtools  # noqa: F401

    print(f"convtools from {Path(convtools.__file__).parent}", flush=True)

    out = Path(ARGS.out)
    print(f"benchmark: {ARGS.threads} threads (OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), {ARGS.dtype}, repeats {ARGS.repeats}, "
          f"budget {ARGS.budget:g} s/measurement, output {out}", flush=True)
    t0 = time.perf_counter()
    records: list = []
    for name, fn in (("sweep", section_sweep), ("photo", section_photo),
                     ("exact", section_exact), ("loader", section_loader)):
        if name in ARGS.sections:
            fn(records)
    targets = evaluate_targets(records)
    lines = table_lines(records)
    lines += [""] + check_agreement(records)
    lines.append("")
    lines.append("targets")
    for t in targets:
        state = {True: "HOLDS", False: "MISSED", None: "n/a"}[t["holds"]]
        val = "-" if t["value"] is None else f"{t['value']:.3g}"
        cpu = "" if t.get("cpu_value") is None else f"; in CPU time {t['cpu_value']:.3g}"
        lines.append(f"  [{state:6s}] {t['text']}: {val} (goal {t['sense']} {t['goal']:g}){cpu}")
    lines.append(f"total benchmark time {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines), flush=True)
    write_outputs(records, targets, lines, out)
    if not ARGS.no_plot:
        try:
            plot(records, out)
        except Exception as exc:  # noqa: BLE001
            print(f"plot failed: {type(exc).__name__}: {exc}")
    print(f"wrote {out / 'results.json'}, results.csv, table.txt"
          + ("" if ARGS.no_plot else ", bench.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
