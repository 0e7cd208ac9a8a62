"""The goals of the benchmark and their verdicts (HOLDS / MISSED).

Each goal is a ratio measured within one run (routes timed interleaved) or an absolute
bound. :func:`evaluate_targets` turns the records of a run into one verdict per goal;
a goal whose measurement is missing (section not run, route failed) is "n/a".
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TARGETS",
    "TARGET_CFG",
    "check_agreement",
    "cpu_ratio",
    "evaluate_targets",
    "find",
    "ratio",
    "verdict",
]

TARGET_CFG = {"n": 16, "c": 16, "size": 32}  # sweep point of the ratio goals (3x3, pad 1)
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
    "activation_seconds": 10.0,  # fit through the ReLU, k=8, 1,000 28x28 digits, 2 cores
}
_KEY = ("section", "kind", "n", "c0", "c1", "c2", "h", "w")


def find(records: list[dict], **fields: Any) -> dict | None:
    """The first record whose fields equal ``fields`` (None if there is none)."""
    for r in records:
        if all(r.get(k) == v for k, v in fields.items()):
            return r
    return None


def _ok(r: dict | None) -> bool:
    return r is not None and r.get("status") == "ok"


def ratio(a: dict | None, b: dict | None) -> float | None:
    """Median time of record a over that of record b (None unless both are ok)."""
    if not (_ok(a) and _ok(b)) or not b["time_s"] > 0:
        return None
    return a["time_s"] / b["time_s"]


def cpu_ratio(a: dict | None, b: dict | None) -> float | None:
    """Process CPU time of record a over that of record b (None when unmeasured)."""
    if a is None or b is None or not a.get("cpu_s") or not b.get("cpu_s"):
        return None
    return a["cpu_s"] / b["cpu_s"]


def verdict(value: float | None, goal: float, sense: str) -> bool | None:
    """Whether ``value`` meets the goal (``sense`` ">=" or "<="); None when unmeasured."""
    if sense not in (">=", "<="):
        raise ValueError(f"sense must be '>=' or '<=', got {sense!r}")
    if value is None:
        return None
    return value >= goal if sense == ">=" else value <= goal


def _target(
    name: str, value: float | None, goal: float, sense: str, text: str, note: str = ""
) -> dict:
    return {
        "target": name,
        "value": value,
        "goal": goal,
        "sense": sense,
        "holds": verdict(value, goal, sense),
        "text": text,
        "note": note,
    }


def _cpu_note(value: float | None) -> str:
    return "" if value is None else f"in CPU time {value:.3g}"


def _sweep_targets(records: list[dict]) -> list[dict]:
    tc = TARGET_CFG
    cfgtxt = f"n={tc['n']}, C={tc['c']}, {tc['size']}x{tc['size']}, 3x3 pad 1"
    out = []
    for kind, ref, refname, barename in (
        ("tiny", "gromo", "gromo (T cached)", "B"),
        ("full", "seed", "seed einsum", "X_F"),
    ):
        key = {"section": "sweep", "kind": kind, "n": tc["n"], "c0": tc["c"], "h": tc["size"]}
        ours = find(records, method="convtools", **key)
        r_ref = find(records, method=ref, **key)
        r_bare = find(records, method="bare", **key)
        name = f"{kind}_speedup_vs_{ref}"
        out.append(
            _target(
                name,
                ratio(r_ref, ours),
                TARGETS[name],
                ">=",
                f"{kind} {cfgtxt}: {refname} / ours",
                _cpu_note(cpu_ratio(r_ref, ours)),
            )
        )
        out.append(
            _target(
                f"{kind}_over_bare",
                ratio(ours, r_bare),
                TARGETS[f"{kind}_over_bare"],
                "<=",
                f"{kind} {cfgtxt}: ours / bare Gram of {barename}",
                _cpu_note(cpu_ratio(ours, r_bare)),
            )
        )
    return out


def _loader_growth(records: list[dict], kind: str, loader_items: int) -> float | None:
    a = find(records, section="loader", kind=kind, n_items=loader_items)
    b = find(records, section="loader", kind=kind, n_items=10 * loader_items)
    if not (_ok(a) and _ok(b)):
        return None
    added_mb = (b["n_items"] - a["n_items"]) * 3 * b["crop"] ** 2 * 4 / 2**20
    return max(0.0, b["peak_mb"] - a["peak_mb"]) / added_mb


def _activation_target(records: list[dict]) -> dict:
    fit = find(records, section="activation", method="fit_through_activation")
    base = find(records, section="activation", method="tiny_closed_form")
    rel = ratio(fit, base)
    note = "" if rel is None else f"{rel:.3g}x the closed-form TINY fit of the same run"
    if fit is not None and fit.get("status") == "skipped":
        note = f"skipped: {fit.get('reason')}"
    return _target(
        "activation_seconds",
        fit["time_s"] if _ok(fit) else None,
        TARGETS["activation_seconds"],
        "<=",
        "fit through the ReLU, k=8, 1000 digits 28x28, 1->4->8: seconds",
        note,
    )


def evaluate_targets(records: list[dict], loader_items: int) -> list[dict]:
    """One verdict per goal of :data:`TARGETS` from the records of a run.

    Also stores, in each convtools record of the sweep, its speed-up over the reference
    route (``speedup_vs_ref``) and its ratio to the bare product (``over_bare``).

    Returns
    -------
    list[dict]
        target, value, goal, sense, holds (True / False / None), text, note
    """
    out = _sweep_targets(records)
    for kind in ("tiny", "full"):
        r = find(records, section="photo", kind=kind, method="convtools")
        ok = _ok(r) and "peak_mb" in r
        out.append(
            _target(
                f"photo_{kind}_seconds",
                r["time_s"] if _ok(r) else None,
                TARGETS["photo_seconds"],
                "<=",
                f"photo 427x640 3->8->8 {kind}: seconds",
            )
        )
        out.append(
            _target(
                f"photo_{kind}_peak_mb",
                r["peak_mb"] if ok else None,
                TARGETS["photo_peak_mb"],
                "<=",
                f"photo 427x640 3->8->8 {kind}: peak MB",
            )
        )
    r = find(records, section="exact")
    out.append(
        _target(
            "exact_seconds",
            r["time_s"] if _ok(r) and r["converged"] else None,
            TARGETS["exact_seconds"],
            "<=",
            "exact solver C=16, 3x3/3x3, k=4, converged: seconds",
        )
    )
    for kind in ("tiny", "full"):
        out.append(
            _target(
                f"loader_{kind}_growth",
                _loader_growth(records, kind, loader_items),
                TARGETS["loader_growth"],
                "<=",
                f"DataLoader {kind}: peak growth / data growth at 10x data",
            )
        )
    out.append(_activation_target(records))
    for r in records:
        if r.get("section") == "sweep" and r.get("method") == "convtools":
            key = {k: r[k] for k in ("section", "kind", "n", "c0", "h")}
            ref = "gromo" if r["kind"] == "tiny" else "seed"
            r["speedup_vs_ref"] = ratio(find(records, method=ref, **key), r)
            r["over_bare"] = ratio(r, find(records, method="bare", **key))
    return out


def check_agreement(records: list[dict], dtype: str) -> list[str]:
    """Compare the (S, N) fingerprints of the routes that compute the same statistics.

    Returns one "MISMATCH ..." line per disagreement (an empty list when all agree).
    """
    msgs = []
    tol = 1e-3 if dtype == "float32" else 1e-8
    for r in records:
        if r.get("method") != "convtools" or r["status"] != "ok" or "check" not in r:
            continue
        key = {k: r[k] for k in _KEY}
        ref = find(records, method="gromo" if r["kind"] == "tiny" else "seed", **key)
        pairs = [(ref, ("S_norm", "S_sum", "N_norm", "N_sum"))]
        if r["kind"] == "full":
            pairs.append((find(records, method="bare", **key), ("S_norm", "S_sum")))
        for other, keys in pairs:
            if not _ok(other) or "check" not in other:
                continue
            for k in keys:
                a, b = r["check"].get(k), other["check"].get(k)
                if a is None or b is None:
                    continue
                scale = max(abs(b), r["check"].get(k.split("_")[0] + "_norm", 0.0), 1e-30)
                if abs(a - b) > tol * scale:
                    msgs.append(
                        f"MISMATCH {r['section']} {r['kind']} {r['c0']}ch "
                        f"{r['h']}x{r['w']} {k}: convtools {a:.6g} vs "
                        f"{other['method']} {b:.6g}"
                    )
    return msgs
