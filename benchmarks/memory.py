"""Memory probes and process isolation for the benchmarks and notebook 03.

Notebook 03 (section 7, "What each formulation costs") imports::

    from benchmarks.memory import PeakResidentMemory, malloc_trim, measure

``measure(fn, *args, repeats=3, device=dev)`` is the notebook's former helper of the same
name: the fastest of ``repeats`` timed calls and the memory one call needs (resident memory
sampled by a thread on the CPU, the allocator's peak on a GPU). ``PeakResidentMemory`` is
the sampler thread on its own, ``malloc_trim`` hands freed heap memory back to the system.

All sizes are in bytes.

What is here, and why it is written by hand: ``torch.utils.benchmark`` times calls but
measures no memory, and the peak memory of a call is easily hidden by what an earlier call
left in the allocator's caches. Two probes therefore:

* :class:`PeakResidentMemory` samples the resident set size (RSS) from a background thread.
  It works on any platform with ``psutil`` (or Linux's ``/proc``) but can miss a peak
  shorter than its sampling interval.
* :class:`KernelPeakMemory` resets the kernel's own high-water mark (Linux: writing ``5`` to
  ``/proc/self/clear_refs``) and reads ``VmHWM`` at the end: exact, nothing is missed, but
  Linux only (elsewhere it reports the peak since the process started).

:func:`run_isolated` runs one measurement in a child process forked from the caller, so
that each measurement starts from the same allocator state.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = [
    "KernelPeakMemory",
    "PeakResidentMemory",
    "malloc_trim",
    "measure",
    "peak_rss_bytes",
    "reset_peak",
    "rss_bytes",
    "run_isolated",
]

_STATUS = "/proc/self/status"
_HAVE_PROC = os.path.exists(_STATUS)

try:  # glibc only; elsewhere malloc_trim() does nothing
    _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):
    _MALLOC_TRIM = None


def malloc_trim(pad: int = 0) -> bool:
    """Hand the heap memory glibc keeps after ``free`` back to the operating system.

    Call it before a resident-memory measurement, so that memory freed by earlier work and
    still held by the C allocator does not lower (or hide) the measured increase.

    Parameters
    ----------
    pad : int
        bytes to leave untrimmed at the top of the heap (glibc's argument)

    Returns
    -------
    bool
        True when glibc released some memory; False when it released none or when the C
        library is not glibc
    """
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(int(pad)))


def _proc_kb(key: str) -> float | None:
    """One ``kB`` field of /proc/self/status (None off Linux)."""
    if not _HAVE_PROC:
        return None
    with open(_STATUS) as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return None


def rss_bytes() -> float:
    """Resident set size of this process now, in bytes."""
    kb = _proc_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import psutil  # noqa: PLC0415  (only off Linux)

    return float(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> float:
    """Largest resident set size of this process since start or :func:`reset_peak` (bytes)."""
    kb = _proc_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    import resource  # noqa: PLC0415  (only off Linux)

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(r if sys.platform == "darwin" else r * 1024)


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) of this process to its current RSS.

    Returns
    -------
    bool
        True on success (Linux); False where the counter cannot be reset
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PeakResidentMemory:
    """Largest increase of the resident memory during a ``with`` block, sampled by a thread.

    On entry: garbage collection, :func:`malloc_trim`, then the RSS is the baseline; a
    daemon thread reads the RSS every ``interval`` seconds until the block ends (and once
    more at its end). Peaks shorter than ``interval`` can be missed; operations that hold
    the GIL for long delay the samples but are still seen at their end.

    Parameters
    ----------
    interval : float
        seconds between two samples (default 0.5 ms)

    Attributes
    ----------
    delta : float
        peak RSS minus baseline, in bytes; NaN before the block ends
    base, peak : float
        baseline and peak RSS in bytes

    Examples
    --------
    >>> with PeakResidentMemory() as mem:
    ...     big = bytearray(50 * 2**20)  # doctest: +SKIP
    >>> mem.delta >= 50 * 2**20  # doctest: +SKIP
    True
    """

    def __init__(self, interval: float = 5e-4) -> None:
        self.interval = float(interval)
        self.delta = float("nan")
        self.base = self.peak = float("nan")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakResidentMemory:
        gc.collect()
        malloc_trim()
        self.base = self.peak = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.delta = self.peak - self.base


class KernelPeakMemory:
    """Exact peak of the resident memory during a ``with`` block (Linux's ``VmHWM``).

    On entry: garbage collection, :func:`malloc_trim`, reset of the kernel's high-water
    mark, baseline = RSS. On exit ``delta = VmHWM - baseline``: the memory the block needed
    on top of what existed before it, however short the peak. Off Linux the counter cannot
    be reset (``reset`` is False) and ``delta`` includes everything since the process
    started: run the measurement in a fresh process (:func:`run_isolated`).

    Attributes
    ----------
    delta : float
        peak minus baseline, in bytes (never negative); NaN before the block ends
    base : float
        RSS at entry, in bytes
    reset : bool
        whether the kernel's counter was reset
    """

    def __init__(self) -> None:
        self.delta = float("nan")
        self.base = float("nan")
        self.reset = False

    def __enter__(self) -> KernelPeakMemory:
        gc.collect()
        malloc_trim()
        self.reset = reset_peak()
        self.base = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delta = max(0.0, peak_rss_bytes() - self.base)


def measure(
    fn: Callable[..., Any], *args: Any, repeats: int = 3, device: Any = "cpu"
) -> tuple[float, float]:
    """Fastest time and memory of ``fn(*args)``.

    One call measures the memory: on a CUDA device the allocator's peak above what was
    allocated before (``torch.cuda.max_memory_allocated``), elsewhere
    :class:`PeakResidentMemory`. Then ``repeats`` timed calls (the device synchronized
    around each); a fixed count rather than ``torch.utils.benchmark``'s autorange, so that
    the cost of a sweep is known in advance.

    Parameters
    ----------
    fn : callable
        the computation; its result is discarded
    *args
        its arguments
    repeats : int
        timed calls (>= 1)
    device : torch.device | str
        where ``fn`` computes ("cpu", "cuda", "cuda:1", ...)

    Returns
    -------
    seconds : float
        the fastest of the timed calls
    memory : float
        bytes needed by one call on top of what existed before it (NaN if unmeasurable)
    """
    import torch  # noqa: PLC0415  (the probes above work without torch)

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    if cuda:
        sync()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn(*args)
        sync()
        memory = float(torch.cuda.max_memory_allocated(dev) - base)
    else:
        with PeakResidentMemory() as peak:
            fn(*args)
        memory = peak.delta
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn(*args)
        sync()
        times.append(time.perf_counter() - start)
    return min(times), memory


def _child(
    conn: Any, fn: Callable[..., dict], kwargs: dict, threads: int | None, seed: int | None
) -> None:
    try:
        if threads is not None or seed is not None:
            import torch  # noqa: PLC0415

            if threads is not None:
                torch.set_num_threads(threads)
            if seed is not None:
                torch.manual_seed(seed)
        result = fn(**kwargs)
    except BaseException as exc:  # noqa: BLE001  (report anything, MemoryError included)
        tb = traceback.format_exc(limit=3).strip().splitlines()
        result = {
            "status": "error",
            "reason": f"{type(exc).__name__}: {exc}"[:300],
            "traceback": tb[-3:],
        }
    try:
        conn.send(result)
    finally:
        conn.close()


def run_isolated(
    fn: Callable[..., dict],
    kwargs: dict | None = None,
    *,
    timeout: float = 600.0,
    threads: int | None = None,
    seed: int | None = None,
) -> dict:
    """Run ``fn(**kwargs)`` in a child process forked from this one; return its dict.

    Every measurement gets a process of its own, so that no allocation of one can hide in
    the allocator caches left by another, and a crash (out of memory) or a hang costs one
    record instead of the run. Import heavy modules (torch) in the parent before the first
    call: forked children then start warm. Where fork is unavailable (spawn), ``fn`` and the
    arguments must be picklable.

    Parameters
    ----------
    fn : callable
        returns a picklable dict (it goes back through a pipe)
    kwargs : dict | None
        keyword arguments of ``fn``
    timeout : float
        seconds before the child is killed
    threads : int | None
        ``torch.set_num_threads`` in the child
    seed : int | None
        ``torch.manual_seed`` in the child

    Returns
    -------
    dict
        what ``fn`` returned, or ``{"status": "error", "reason": ...}`` when it raised,
        timed out or died
    """
    import multiprocessing as mp  # noqa: PLC0415

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, kwargs or {}, threads, seed), daemon=True)
    proc.start()
    send.close()
    result = None
    try:
        if recv.poll(timeout):
            result = recv.recv()
    except EOFError:
        result = None
    if result is None and proc.is_alive():
        proc.kill()
        result = {"status": "error", "reason": f"timeout after {timeout:.0f} s"}
    proc.join()
    if result is None:
        result = {
            "status": "error",
            "reason": f"child died (exit code {proc.exitcode}; -9 means killed, e.g. "
            "out of memory)",
        }
    return result
