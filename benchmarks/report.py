"""Reporting: the printed tables, results.json, results.csv and bench.png."""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

from tabulate import tabulate

from benchmarks.targets import cpu_ratio, find, ratio

__all__ = ["CSV_COLUMNS", "plot", "table_lines", "target_lines", "write_outputs"]

CSV_COLUMNS = [
    "section",
    "kind",
    "method",
    "n",
    "c0",
    "c1",
    "c2",
    "h",
    "w",
    "dtype",
    "status",
    "time_s",
    "time_iqr_s",
    "cpu_s",
    "repeats",
    "peak_mb",
    "setup_mb",
    "t_mb",
    "t_build_s",
    "est_gb",
    "est_gflop",
    "speedup_vs_ref",
    "over_bare",
    "n_items",
    "batches",
    "sweeps",
    "converged",
    "fit_iterations",
    "fit_rel_residual_relu",
    "tiny_rel_residual_relu",
    "reason",
]


def _ms(r: dict | None) -> str:
    if r is None:
        return "-"
    if r["status"] == "ok":
        t = r["time_s"] * 1e3
        return f"{t:.3g}" if t < 1000 else f"{t:.0f}"
    if r["status"] == "skipped":
        if "GB" in r.get("reason", ""):
            return f"skip({r['est_gb']:.3g}GB)"
        return f"skip({r.get('est_gflop', 0):.0f}GF)"
    return "error"


def _mb(r: dict | None) -> str:
    if r is None or r["status"] != "ok" or "peak_mb" not in r:
        return "-"
    return f"{r['peak_mb']:.3g}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def _route_table(records: list, section: str, kind: str, ref: str) -> list[str]:
    rows = [
        r
        for r in records
        if r["section"] == section and r["kind"] == kind and r["method"] == "convtools"
    ]
    if not rows:
        return []
    table = []
    for r in rows:
        key = {k: r[k] for k in ("section", "kind", "n", "c0", "c1", "c2", "h", "w")}
        rr, rb = find(records, method=ref, **key), find(records, method="bare", **key)
        table.append(
            [
                r["n"],
                f"{r['c0']}>{r['c1']}>{r['c2']}",
                f"{r['h']}x{r['w']}",
                _ms(rr),
                _ms(r),
                _ms(rb),
                _x(ratio(rr, r)),
                _x(ratio(r, rb)),
                _mb(rr),
                _mb(r),
                _mb(rb),
                _x(cpu_ratio(rr, r)),
                _x(cpu_ratio(r, rb)),
            ]
        )
    refname = "gromo (T cached)" if ref == "gromo" else "seed einsum"
    head = [
        "n",
        "C",
        "HxW",
        f"{refname} ms",
        "ours ms",
        "bare ms",
        f"{ref}/ours",
        "ours/bare",
        f"peak {ref}",
        "peak ours",
        "peak bare",
        f"cpu {ref}/ours",
        "cpu ours/bare",
    ]
    title = (
        f"{section}: {kind} statistics, {rows[0]['dtype']}; times: median wall clock; "
        "peak: MB above the inputs; cpu: ratios of process CPU time"
    )
    return ["", title, tabulate(table, head, tablefmt="simple", disable_numparse=True)]


def _exact_lines(records: list) -> list[str]:
    lines = []
    for r in (r for r in records if r["section"] == "exact"):
        lines += [
            "",
            "exact solver (ct.exact_neurons from the TINY start), n=16, C=16, 32x32, "
            "3x3 then 3x3, k=4, float64",
        ]
        if r["status"] != "ok":
            lines.append(f"  {r['status']}: {r.get('reason')}")
            continue
        lines.append(
            f"  {r['time_s']:.3g} s (median of {r['repeats']}), {r['sweeps']} "
            f"iterations (max {r['max_iter']}, tol {r['tol']:g}), converged="
            f"{r['converged']}, monotone={r['monotone']}, objective "
            f"{r['objective_first']:.4g} -> {r['objective_last']:.4g}"
        )
        if "grow_s" in r:
            lines.append(
                f"  ct.grow(method='exact') end to end {r['grow_s']:.3g} s, "
                f"k={r['grow_k']}, relative residual {r['grow_rel_residual']:.3g} "
                f"(tiny: {r['tiny_rel_residual']:.3g})"
            )
    return lines


def _loader_lines(records: list) -> list[str]:
    rows = [r for r in records if r["section"] == "loader"]
    if not rows:
        return []
    table = []
    for r in rows:
        data_mb = r["n_items"] * 3 * r["crop"] ** 2 * 4 / 2**20  # if the crops were stored
        if r["status"] == "ok":
            table.append(
                [
                    r["kind"],
                    r["n_items"],
                    f"{data_mb:.3g}",
                    r["batches"],
                    f"{r['time_s']:.3g}",
                    f"{r['peak_mb']:.3g}",
                ]
            )
        else:
            table.append(
                [
                    r["kind"],
                    r["n_items"],
                    f"{data_mb:.3g}",
                    "-",
                    "-",
                    f"{r['status']}: {r.get('reason')}",
                ]
            )
    return [
        "",
        "DataLoader of lazily generated 64x64 random crops of the sample photographs, "
        "3->8->8, batch 16, v_goal from a fixed teacher pair (data MB: the crops' "
        "size if they were stored, float32)",
        tabulate(
            table,
            ["kind", "crops", "data MB", "batches", "time s", "peak MB"],
            tablefmt="simple",
            disable_numparse=True,
        ),
    ]


def _activation_lines(records: list) -> list[str]:
    rows = [r for r in records if r["section"] == "activation"]
    if not rows:
        return []
    base = find(rows, method="tiny_closed_form")
    fit = find(rows, method="fit_through_activation") or {}
    residual = {
        "tiny_closed_form": fit.get("tiny_rel_residual_relu"),
        "fit_through_activation": fit.get("fit_rel_residual_relu"),
    }
    table = []
    for r in rows:
        if r["status"] != "ok":
            table.append([r["method"], "-", "-", "-", "-", f"{r['status']}: {r.get('reason')}"])
            continue
        resid = residual.get(r["method"])
        iters = fit.get("fit_iterations") if r["method"] == "fit_through_activation" else None
        table.append(
            [
                r["method"],
                f"{r['time_s']:.3g}",
                _x(ratio(r, base)),
                _x(cpu_ratio(r, base)),
                "-" if iters is None else iters,
                "-" if resid is None else f"{resid:.3g}",
            ]
        )
    return [
        "",
        "fit of k=8 new neurons through a ReLU: 1000 digits 28x28 (scikit-learn's, "
        "resized), 1->4->8, 3x3 pad 1, float32; goal from a teacher through a ReLU",
        tabulate(
            table,
            [
                "route",
                "time s",
                "/ closed form",
                "cpu / closed form",
                "L-BFGS iterations",
                "rel. residual through ReLU",
            ],
            tablefmt="simple",
            disable_numparse=True,
        ),
    ]


def table_lines(records: list) -> list[str]:
    """The printed tables of a run (one string per line)."""
    lines: list[str] = []
    for section in ("sweep", "photo"):
        for kind, ref in (("tiny", "gromo"), ("full", "seed")):
            lines += _route_table(records, section, kind, ref)
    return lines + _exact_lines(records) + _loader_lines(records) + _activation_lines(records)


def target_lines(targets: list[dict]) -> list[str]:
    """One line per goal: [HOLDS], [MISSED] or [n/a], the value, the goal and a note."""
    lines = ["", "targets"]
    for t in targets:
        state = {True: "HOLDS", False: "MISSED", None: "n/a"}[t["holds"]]
        val = "-" if t["value"] is None else f"{t['value']:.3g}"
        note = f"; {t['note']}" if t.get("note") else ""
        lines.append(f"  [{state:6s}] {t['text']}: {val} (goal {t['sense']} {t['goal']:g}){note}")
    return lines


def _meta(args) -> dict:
    meta = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "threads": args.threads,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "budget_s": args.budget,
        "quick": args.quick,
        "bias": args.bias,
        "peak_memory_method": "fork per measurement; /proc/self/clear_refs reset; "
        "VmHWM - VmRSS before the first call",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    for package in ("torch", "gromo"):
        try:
            meta[package] = version(package)
        except PackageNotFoundError:
            pass
    return meta


def write_outputs(args, records: list, targets: list, lines: list[str], out: Path) -> None:
    """results.json (meta, targets, records), results.csv (records) and table.txt."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.json", "w") as f:
        json.dump(
            {"meta": _meta(args), "targets": targets, "records": records}, f, indent=1, default=str
        )
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: r.get(k, "") for k in CSV_COLUMNS})
    (out / "table.txt").write_text("\n".join(lines) + "\n")


def plot(records: list, channels: list[int], n: int, out: Path) -> None:
    """bench.png: time and peak memory of the sweep against the number of pixels."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    styles = {"gromo": ("s", ":"), "seed": ("s", ":"), "convtools": ("o", "-"), "bare": ("^", "--")}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, kind in enumerate(("tiny", "full")):
        for ci, c in enumerate(channels):
            for method in ("gromo" if kind == "tiny" else "seed", "convtools", "bare"):
                rs = [
                    r
                    for r in records
                    if r["section"] == "sweep"
                    and r["kind"] == kind
                    and r["method"] == method
                    and r["c0"] == c
                    and r["status"] == "ok"
                ]
                if not rs:
                    continue
                px = [r["h"] * r["w"] for r in rs]
                style = {
                    "marker": styles[method][0],
                    "ls": styles[method][1],
                    "color": colors[ci % len(colors)],
                    "label": f"{method}, C={c}",
                }
                axes[0, col].loglog(px, [r["time_s"] for r in rs], **style)
                axes[1, col].loglog(px, [max(r.get("peak_mb", 0.0), 1e-2) for r in rs], **style)
        axes[0, col].set(title=f"{kind} statistics: time (n={n})", ylabel="seconds (median)")
        axes[1, col].set(title=f"{kind} statistics: peak memory above inputs", ylabel="MB")
        for ax in axes[:, col]:
            ax.set_xlabel("pixels H x W")
            ax.grid(True, which="both", alpha=0.3)
        if axes[0, col].get_legend_handles_labels()[0]:
            axes[0, col].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=110)
    plt.close(fig)
