"""The sections of a run: which problems are measured, each in processes of its own.

Every ``section_*`` function takes the parsed command line (:func:`benchmarks.cli.parse_args`)
and the list of records, appends its records and prints one progress line per record.

* sweep: image sizes x channel counts, tiny and full, four routes each
* photo: one 427x640 photograph through 3 -> 8 -> 8 channels
* exact: the exact solver (C = 16, 3x3 and 3x3, k = 4, float64)
* loader: ``StatisticsAccumulator`` over a DataLoader whose data set grows tenfold
* activation: the fit through a ReLU (k = 8, 1,000 digits of 28x28) and its baseline
"""

from __future__ import annotations

import argparse

from benchmarks.fits import ACTIVATION_ROUTES, job_activation, job_exact
from benchmarks.memory import run_isolated
from benchmarks.problems import config, estimate
from benchmarks.routes import job_loader, job_route_memory, job_route_times
from benchmarks.timing import TimingPlan

__all__ = ["SECTIONS", "plan_of", "route_records"]

Args = argparse.Namespace


def plan_of(args: Args) -> TimingPlan:
    """The timing plan of the command line."""
    return TimingPlan(repeats=args.repeats, budget=args.budget, threads=args.threads)


def _isolated(args: Args, job, **kwargs) -> dict:
    return run_isolated(job, kwargs, timeout=args.timeout, threads=args.threads, seed=args.seed)


def _cfg(args: Args, n: int, c0: int, c1: int, c2: int, h: int, w: int, **extra) -> dict:
    return config(n, c0, c1, c2, h, w, bias=args.bias, dtype=args.dtype, seed=args.seed, **extra)


def progress(rec: dict) -> None:
    """Print one line about a record."""
    what = f"{rec['section']:6s} {rec.get('kind', ''):5s} {rec.get('method', ''):9s}"
    if "h" in rec:
        what += f" n={rec['n']} C={rec['c0']}->{rec['c1']}->{rec['c2']} {rec['h']}x{rec['w']}"
    if rec["status"] == "ok":
        peak = f"{rec['peak_mb']:8.1f} MB" if "peak_mb" in rec else "       -"
        msg = f"{rec['time_s'] * 1e3:10.2f} ms  peak {peak}"
    else:
        msg = f"{rec['status']}: {rec.get('reason', '')}"
    print(f"  {what:55s} {msg}", flush=True)


def _skip_reason(args: Args, method: str, mem: float, flop: float) -> str | None:
    if method in ("gromo", "seed", "bare") and mem > args.max_gb * 1e9:
        return f"needs {mem / 1e9:.3g} GB (> --max-gb {args.max_gb:g})"
    if flop > args.max_gflop * 1e9:
        return f"needs {flop / 1e9:.3g} GFLOP per call (> --max-gflop {args.max_gflop:g})"
    return None


def route_records(args: Args, section: str, cfg: dict, kind: str, methods: list[str]) -> list[dict]:
    """Records of several routes of one configuration: times together, memory apart."""
    recs = []
    for method in methods:
        mem, flop = estimate(cfg, kind, method)
        rec = {
            "section": section,
            "kind": kind,
            "method": method,
            **cfg,
            "est_gb": mem / 1e9,
            "est_gflop": flop / 1e9,
            "status": "ok",
        }
        reason = _skip_reason(args, method, mem, flop)
        if reason:
            rec.update(status="skipped", reason=reason)
        recs.append(rec)
    todo = [r for r in recs if r["status"] == "ok"]
    if todo:
        times = _isolated(
            args,
            job_route_times,
            cfg=cfg,
            kind=kind,
            methods=[r["method"] for r in todo],
            plan=plan_of(args),
        )
        for r in todo:
            if r["method"] not in times:  # the child failed as a whole
                r.update(status="error", reason=times.get("reason", "no result"))
                continue
            r.update(times[r["method"]])
            if r["status"] != "ok":
                continue
            m = _isolated(args, job_route_memory, cfg=cfg, kind=kind, method=r["method"])
            if m.pop("status", None) != "ok":
                r.update(peak_status="error", peak_reason=m.get("reason"))
            else:
                r.update(m)
    for r in recs:
        progress(r)
    return recs


def section_sweep(args: Args, records: list) -> None:
    print("sweep: image sizes x channel counts", flush=True)
    for c in args.channels:
        for s in args.sizes:
            cfg = _cfg(args, args.n, c, c, c, s, s)
            for kind, ref in (("tiny", "gromo"), ("full", "seed")):
                records += route_records(args, "sweep", cfg, kind, [ref, "convtools", "bare"])


def section_photo(args: Args, records: list) -> None:
    print("photo: 427x640 RGB photograph through 3->8->8 channels", flush=True)
    cfg = _cfg(args, 1, 3, 8, 8, 427, 640, data="photo")
    for kind, ref in (("tiny", "gromo"), ("full", "seed")):
        records += route_records(args, "photo", cfg, kind, [ref, "convtools", "bare"])


def section_exact(args: Args, records: list) -> None:
    print("exact: ct.exact_neurons, C[-1]=C[+1]=16, 3x3 and 3x3, k=4", flush=True)
    cfg = _cfg(args, 16, 16, 16, 16, 32, 32)
    cfg["dtype"] = "float64"
    rec = {"section": "exact", "kind": "full", "method": "exact_neurons", **cfg, "k": 4}
    rec.update(
        _isolated(args, job_exact, cfg=cfg, k=4, max_iter=500, tol=1e-10, plan=plan_of(args))
    )
    progress(rec)
    records.append(rec)


def section_loader(args: Args, records: list) -> None:
    print("loader: StatisticsAccumulator over a DataLoader of random photo crops", flush=True)
    for kind in ("tiny", "full"):
        for factor in (1, 10):
            n_items = args.loader_items * factor
            rec = {
                "section": "loader",
                "kind": kind,
                "method": "accumulator",
                "n_items": n_items,
                "batch": 16,
                "crop": 64,
                "workers": 0,
            }
            rec.update(
                _isolated(
                    args,
                    job_loader,
                    kind=kind,
                    n_items=n_items,
                    batch=16,
                    crop=64,
                    workers=0,
                    bias=args.bias,
                    seed=args.seed,
                )
            )
            progress(rec)
            records.append(rec)


def section_activation(args: Args, records: list) -> None:
    # the network of chapters 07 and 08: conv1 1 -> 4, conv2 4 -> 8 (the fit costs k and C[+1])
    print("activation: fit through a ReLU, k=8, 1000 digits 28x28, 1->4->8", flush=True)
    cfg = config(1000, 1, 4, 8, 28, 28, bias=True, dtype="float32", seed=args.seed, data="digits")
    res = _isolated(
        args, job_activation, cfg=cfg, k=8, max_iter=args.activation_iters, plan=plan_of(args)
    )
    routes = res.get("routes", {})
    for method in ACTIVATION_ROUTES:
        rec = {"section": "activation", "kind": "relu", "method": method, **cfg, "k": 8}
        rec.update(
            routes.get(method, {"status": "error", "reason": res.get("reason", "no result")})
        )
        if method == "fit_through_activation":
            rec.update(res.get("quality", {}))
        progress(rec)
        records.append(rec)


SECTIONS = {
    "sweep": section_sweep,
    "photo": section_photo,
    "exact": section_exact,
    "loader": section_loader,
    "activation": section_activation,
}
