"""Fast checks of the benchmark package (no timing is asserted here)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import convtools as ct
from benchmarks import memory, problems, targets
from benchmarks.timing import TimingPlan, time_interleaved

REPO = Path(__file__).resolve().parents[1]
MB = 2**20


@pytest.mark.parametrize(
    "geometry",
    [
        {},
        {"s1": 2},
        {"s2": 2, "p2": 0},
        {"d1": 2, "p1": 2, "s2": 3},
        {"k1": 5, "p1": 0, "k2": 1, "p2": 0},
    ],
)
def test_dims_follow_the_convolutions(geometry):
    cfg = problems.config(2, 3, 4, 5, 17, 12, bias=True, **geometry)
    d = problems.dims(cfg)
    x, v, conv1, conv2 = problems.make_problem(cfg)
    with torch.no_grad():
        y1 = conv1(x)
        y2 = conv2(y1)
    assert (d["h1"], d["w1"]) == tuple(y1.shape[-2:])
    assert (d["h2"], d["w2"]) == tuple(y2.shape[-2:]) == tuple(v.shape[-2:])
    assert (d["h2"], d["w2"]) == ct.conv_output_size((d["h1"], d["w1"]), conv2)
    assert d["A"] == ct.unfold_input(x, conv1).shape[1]
    assert d["M"] == d["h2"] * d["w2"] and d["L"] == d["h1"] * d["w1"]


def test_config_rejects_unknown_geometry():
    with pytest.raises(ValueError, match="unknown geometry"):
        problems.config(1, 1, 1, 1, 8, 8, stride=2)


def test_sampler_sees_an_allocation_it_watched():
    size = 64 * MB
    with memory.PeakResidentMemory() as mem:
        block = torch.ones(size // 4, dtype=torch.float32)  # touched: resident
        time.sleep(0.01)
    assert mem.delta >= 0.9 * size
    assert mem.peak >= mem.base + mem.delta - 1
    del block


@pytest.mark.skipif(not memory.reset_peak(), reason="needs Linux's /proc/self/clear_refs")
def test_kernel_peak_sees_a_freed_allocation():
    size = 64 * MB
    with memory.KernelPeakMemory() as mem:
        block = torch.ones(size // 4, dtype=torch.float32)
        del block  # gone before the block ends: only the high-water mark remembers it
    assert mem.reset
    assert mem.delta >= 0.9 * size


def test_measure_returns_time_and_memory():
    seconds, used = memory.measure(lambda n: torch.ones(n).sum(), 4 * MB, repeats=2)
    assert seconds > 0
    assert used == used and used >= 0  # not NaN
    with pytest.raises(ValueError):
        memory.measure(lambda: None, repeats=0)


def test_malloc_trim_answers_a_bool():
    assert isinstance(memory.malloc_trim(), bool)


def _answer(value):
    return {"status": "ok", "value": value, "pid": os.getpid()}


def _fail():
    raise RuntimeError("boom")


def _hang():
    time.sleep(60)
    return {"status": "ok"}


def test_run_isolated_runs_in_a_child_and_reports_failures():
    res = memory.run_isolated(_answer, {"value": 3}, threads=1, seed=0)
    assert res["status"] == "ok" and res["value"] == 3 and res["pid"] != os.getpid()
    res = memory.run_isolated(_fail)
    assert res["status"] == "error" and "RuntimeError: boom" in res["reason"]
    res = memory.run_isolated(_hang, timeout=0.5)
    assert res["status"] == "error" and "timeout" in res["reason"]


def test_interleaved_timing_records_every_route():
    plan = TimingPlan(repeats=3, budget=1.0, min_time=0.0, threads=1)
    res = time_interleaved({"a": lambda: sum(range(1000)), "b": _fail}, plan)
    assert res["a"]["status"] == "ok" and res["a"]["repeats"] == 3
    assert res["a"]["time_s"] > 0 and res["a"]["cpu_s"] is not None
    assert res["b"]["status"] == "error"


def test_verdicts():
    assert targets.verdict(31.0, 30.0, ">=") is True
    assert targets.verdict(29.0, 30.0, ">=") is False
    assert targets.verdict(1.5, 2.0, "<=") is True
    assert targets.verdict(None, 2.0, "<=") is None
    with pytest.raises(ValueError):
        targets.verdict(1.0, 2.0, "<")


def _rec(section, kind, method, time_s, **extra):
    tc = targets.TARGET_CFG
    return {
        "section": section,
        "kind": kind,
        "method": method,
        "n": tc["n"],
        "c0": tc["c"],
        "c1": tc["c"],
        "c2": tc["c"],
        "h": tc["size"],
        "w": tc["size"],
        "status": "ok",
        "time_s": time_s,
        **extra,
    }


def test_targets_from_records():
    records = [
        _rec("sweep", "tiny", "gromo", 4.0),
        _rec("sweep", "tiny", "convtools", 0.1),
        _rec("sweep", "tiny", "bare", 0.05),
        _rec("sweep", "full", "seed", 0.2),
        _rec("sweep", "full", "convtools", 0.1),
        _rec("activation", "relu", "tiny_closed_form", 0.5),
        _rec("activation", "relu", "fit_through_activation", 12.0),
    ]
    out = {t["target"]: t for t in targets.evaluate_targets(records, loader_items=256)}
    assert out["tiny_speedup_vs_gromo"]["value"] == pytest.approx(40.0)
    assert out["tiny_speedup_vs_gromo"]["holds"] is True
    assert out["tiny_over_bare"]["holds"] is True
    assert out["full_speedup_vs_seed"]["holds"] is False
    assert out["full_over_bare"]["holds"] is None  # no bare record
    assert out["exact_seconds"]["holds"] is None
    assert out["activation_seconds"]["holds"] is False
    assert "24x" in out["activation_seconds"]["note"]
    assert set(out) >= {f"photo_{k}_seconds" for k in ("tiny", "full")}


@pytest.mark.parametrize("command", [["benchmarks/run.py"], ["-m", "benchmarks"]])
def test_command_line_help(command):
    res = subprocess.run(
        [sys.executable, *command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert "--quick" in res.stdout and "--sections" in res.stdout
