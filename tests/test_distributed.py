"""Statistics summed over two processes (gloo, CPU) equal those of one process.

Two worker processes are started with ``torch.multiprocessing`` (spawn), joined through a
``file://`` rendezvous in a temporary folder (no port to pick) and a loopback-only gloo
transport. Each accumulates every other batch with ``StatisticsAccumulator``, calls
``synchronize()`` (all-reduce of the sums) and saves what it holds; the test compares that,
in float64, with one process accumulating every batch. Every wait has a time limit, so a
broken rendezvous fails the test instead of hanging it.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import convtools as ct

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        not dist.is_available() or not dist.is_gloo_available(),
        reason="torch.distributed with the gloo backend is not available",
    ),
    pytest.mark.skipif(sys.platform == "win32", reason="file:// rendezvous path syntax"),
]

WORLD_SIZE = 2
BATCH_SIZES = (3, 2, 4, 1, 3, 2, 2)  # uneven on purpose: the ranks see different counts
TIMEOUT_S = 60.0  # upper bound for the rendezvous, each collective and the whole run


def _problem():
    """A deterministic conv pair and batches (float64): same numbers in every process."""
    g = torch.Generator().manual_seed(1234)
    conv1 = torch.nn.Conv2d(3, 5, 3, padding=1, bias=True).double()
    conv2 = torch.nn.Conv2d(5, 4, (3, 2), padding=(1, 0), bias=False).double()
    with torch.no_grad():
        for p in (*conv1.parameters(), *conv2.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    batches = []
    for n in BATCH_SIZES:
        x = torch.randn(n, 3, 9, 11, generator=g, dtype=torch.float64)
        with torch.no_grad():
            shape = conv2(conv1(x)).shape
        batches.append((x, torch.randn(shape, generator=g, dtype=torch.float64)))
    return conv1, conv2, batches


def _loopback_interface() -> str | None:
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (OSError, AttributeError):
        return None
    for name in names:
        if name == "lo" or name.startswith("lo"):
            return name
    return None


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """One process: accumulate batches rank, rank + world_size, ...; synchronize; save."""
    torch.set_num_threads(1)
    interface = _loopback_interface()
    if interface is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = interface  # loopback only
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        conv1, conv2, batches = _problem()
        result = {}
        for kind in ct.stats.KINDS:
            acc = ct.StatisticsAccumulator(conv1, conv2, kind=kind)
            for j, (x, v) in enumerate(batches):
                if j % world_size == rank:
                    acc.update(x, v)
            local_samples = acc.n_samples
            acc.synchronize()
            result[kind] = {
                "S": acc.S,
                "N": acc.N,
                "v_sq_norm": acc.v_sq_norm,
                "n_samples": acc.n_samples,
                "local_samples": local_samples,
            }
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    """Run the two workers once for the module; return (results per rank, seconds)."""
    tmp = tmp_path_factory.mktemp("distributed")
    init_file = str(tmp / "rendezvous")  # must not exist yet
    start = time.monotonic()
    context = mp.start_processes(
        _worker,
        args=(WORLD_SIZE, init_file, str(tmp)),
        nprocs=WORLD_SIZE,
        join=False,
        start_method="spawn",
    )
    deadline = start + TIMEOUT_S + 30.0
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"distributed workers still running after {deadline - start:.0f} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
    elapsed = time.monotonic() - start
    results = [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    return results, elapsed


def _single_process(kind: str):
    conv1, conv2, batches = _problem()
    acc = ct.StatisticsAccumulator(conv1, conv2, kind=kind)
    for x, v in batches:
        acc.update(x, v)
    acc.synchronize()  # torch.distributed is not initialized here: a no-op
    return acc


@pytest.mark.parametrize("kind", ct.stats.KINDS)
def test_two_processes_give_the_statistics_of_one(distributed_results, kind):
    results, _ = distributed_results
    reference = _single_process(kind)
    total = sum(BATCH_SIZES)
    assert reference.n_samples == total
    local = [r[kind]["local_samples"] for r in results]
    assert sum(local) == total and all(0 < c < total for c in local)
    for rank, result in enumerate(results):
        got = result[kind]
        assert got["n_samples"] == total, f"rank {rank}"
        for name in ("S", "N", "v_sq_norm"):
            expected = getattr(reference, name)
            assert got[name].dtype == torch.float64
            scale = float(expected.abs().max())
            torch.testing.assert_close(
                got[name],
                expected,
                rtol=1e-12,
                atol=1e-12 * scale,
                msg=lambda m, r=rank, q=name: f"rank {r}, {q}: {m}",
            )


def test_ranks_agree_after_synchronize(distributed_results):
    results, _ = distributed_results
    for kind in ct.stats.KINDS:
        for name in ("S", "N", "v_sq_norm"):
            torch.testing.assert_close(
                results[0][kind][name], results[1][kind][name], rtol=0.0, atol=0.0
            )


def test_distributed_run_is_quick(distributed_results):
    _, elapsed = distributed_results
    assert elapsed < TIMEOUT_S, f"two-process run took {elapsed:.1f} s"


def test_synchronize_without_process_group_is_a_no_op():
    assert not dist.is_initialized()
    conv1, conv2, batches = _problem()
    for kind in ct.stats.KINDS:
        acc = _single_process(kind)
        stats = [ct.statistics(x, conv1, conv2, v, kind=kind) for x, v in batches]
        torch.testing.assert_close(acc.S, sum(s for s, _ in stats), rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(acc.N, sum(n for _, n in stats), rtol=1e-12, atol=1e-10)
        assert acc.n_samples == sum(BATCH_SIZES)
