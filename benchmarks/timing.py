"""Timing: several routes interleaved, or one route with ``torch.utils.benchmark``.

Routes that are compared by a ratio are timed in one process, interleaved: one call of
each route per round, so that a change of load on the machine (other jobs on a shared
machine) hits all of them alike. ``torch.utils.benchmark`` times one statement at a time
and has no such mode, so the loop is written here; its times are summarized by
``torch.utils.benchmark.Measurement`` (median, interquartile range). A single route whose
time is compared with a fixed goal is timed by ``Timer.adaptive_autorange``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TimingPlan", "summarize", "time_interleaved", "time_single"]


@dataclass(frozen=True)
class TimingPlan:
    """How long to time.

    Attributes
    ----------
    repeats : int
        at least this many timed rounds (after one warm-up call per route) ...
    budget : float
        ... unless the timed calls of a route would pass this many seconds (at least one
        timed round is always made)
    min_time : float
        keep going until every route has this many seconds of timed calls (fast routes)
    max_rounds : int
        never more rounds than this
    threads : int
        torch threads during the timing
    """

    repeats: int = 5
    budget: float = 8.0
    min_time: float = 0.3
    max_rounds: int = 100
    threads: int = 2


def summarize(
    name: str, times: list[float], cpu: list[float] | None = None, threads: int = 1
) -> dict:
    """Record of the timed calls of one route (median, best, interquartile range)."""
    from torch.utils.benchmark import Measurement  # noqa: PLC0415
    from torch.utils.benchmark.utils.common import TaskSpec  # noqa: PLC0415

    m = Measurement(
        number_per_run=1,
        raw_times=list(times),
        task_spec=TaskSpec(stmt=name, setup="", num_threads=threads),
    )
    return {
        "status": "ok",
        "time_s": m.median,
        "time_min_s": min(times),
        "time_iqr_s": m.iqr,
        "repeats": len(times),
        "cpu_s": sorted(cpu)[len(cpu) // 2] if cpu else None,
    }


def _error(exc: BaseException) -> dict:
    return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}


def _warm_up(
    calls: dict[str, Callable[[], Any]], out: dict
) -> tuple[dict[str, float], dict[str, float]]:
    """One call of each route: (wall, CPU) seconds; a route that raises is dropped."""
    warm, warm_cpu = {}, {}
    for name, call in list(calls.items()):
        c0, start = time.process_time(), time.perf_counter()
        try:
            res = call()
        except Exception as exc:  # noqa: BLE001
            out[name] = _error(exc)
            del calls[name]
            continue
        warm[name] = time.perf_counter() - start
        warm_cpu[name] = time.process_time() - c0
        del res
    return warm, warm_cpu


def time_interleaved(calls: dict[str, Callable[[], Any]], plan: TimingPlan) -> dict[str, dict]:
    """Time several routes in rounds of one call each; return a record per route.

    Also records the process CPU time of each call (all threads, ``time.process_time``):
    on a loaded machine it varies less than the wall clock. A route whose warm-up call
    alone takes longer than ``plan.budget`` is not called again: that call is its time
    (``repeats`` 0), where a warm-up matters little anyway.

    Parameters
    ----------
    calls : dict[str, callable]
        route name -> call without arguments
    plan : TimingPlan
        repeats, budget and minimum time

    Returns
    -------
    dict[str, dict]
        per route :func:`summarize`'s record plus ``warmup_s``, or an error record
    """
    out: dict[str, dict] = {}
    calls = dict(calls)
    warm, warm_cpu = _warm_up(calls, out)
    for name in [m for m in calls if warm[m] > plan.budget]:
        # a call longer than the whole budget is not repeated: its first call is its time
        del calls[name]
        out[name] = summarize(name, [warm[name]], [warm_cpu[name]], plan.threads)
        out[name].update(repeats=0, warmup_s=warm[name])
    times: dict[str, list[float]] = {m: [] for m in calls}
    cpu: dict[str, list[float]] = {m: [] for m in calls}
    rounds = 0
    while calls and rounds < plan.max_rounds:
        if rounds >= plan.repeats and all(sum(t) >= plan.min_time for t in times.values()):
            break
        spent = sum(sum(t) for t in times.values())
        next_round = sum((times[m][-1] if times[m] else warm[m]) for m in calls)
        if rounds >= 1 and spent + next_round > plan.budget * len(calls):
            break
        for name, call in calls.items():
            c0, t0 = time.process_time(), time.perf_counter()
            res = call()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            del res
        rounds += 1
    for name in calls:
        out[name] = summarize(name, times[name], cpu[name], plan.threads)
        out[name]["warmup_s"] = warm[name]
    return out


def time_single(call: Callable[[], Any], plan: TimingPlan, name: str = "call") -> dict:
    """Time one route with ``torch.utils.benchmark.Timer.adaptive_autorange``.

    Runs until the interquartile range is within 10 % of the median or ``plan.budget``
    seconds are spent (at least one call after the timer's own warm-up).
    """
    from torch.utils.benchmark import Timer  # noqa: PLC0415

    timer = Timer(stmt="call()", globals={"call": call}, num_threads=plan.threads, description=name)
    m = timer.adaptive_autorange(threshold=0.1, min_run_time=0.01, max_run_time=plan.budget)
    rec = summarize(name, m.times, None, plan.threads)
    rec["time_min_s"] = min(m.times)
    return rec
