"""Command line of the benchmark: make bench, benchmarks/run.py, python -m benchmarks.

Measures the time and peak memory of the growth statistics S and N between two
convolutions (convtools against gromo 0.1.0, the seed notebook and the bare matrix
product), the exact solver, the fit through the activation, and the memory of a DataLoader
pass. See benchmarks/README.md for the method and the targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "parse_args"]

REPO = Path(__file__).resolve().parents[1]
SECTION_NAMES = ("sweep", "photo", "exact", "loader", "activation")


def _int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sweep, fewer repeats and a shorter budget (a few minutes)",
    )
    p.add_argument("--out", default=str(REPO / "build" / "bench"), help="output folder")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds after one warm-up call (default 5, quick 3)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of timed calls per route before repeats are cut (default 8, quick 3)",
    )
    p.add_argument("--n", type=int, default=16, help="batch size of the sweep")
    p.add_argument(
        "--sizes",
        type=_int_list,
        default=None,
        help="comma-separated image sizes (default 8,16,32,64,128; quick 8,16,32)",
    )
    p.add_argument(
        "--channels",
        type=_int_list,
        default=None,
        help="comma-separated channel counts C[-1]=C=C[+1] (default 4,16,64; quick 4,16)",
    )
    p.add_argument("--bias", action="store_true", help="conv1 with a bias (A gets a ones row)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument(
        "--max-gb",
        type=float,
        default=3.0,
        help="skip gromo/seed/bare routes whose tensors would need more (GB)",
    )
    p.add_argument(
        "--max-gflop",
        type=float,
        default=1500.0,
        help="skip measurements whose estimated work is larger (GFLOP per call)",
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTION_NAMES),
        help="comma-separated subset of " + ",".join(SECTION_NAMES),
    )
    p.add_argument(
        "--loader-items",
        type=int,
        default=256,
        help="crops of the small data set of the loader section (10x for the large one)",
    )
    p.add_argument(
        "--activation-iters",
        type=int,
        default=None,
        help="L-BFGS iterations of the fit through the activation (default: convtools' own)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds before one measurement's child process is killed",
    )
    p.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY for the run: PASSIVE lets idle OpenMP threads sleep "
        "instead of spinning, so that on a shared machine a spinning thread "
        "does not starve its partner; 'inherit' keeps the environment's",
    )
    p.add_argument(
        "--convtools-path",
        default=None,
        help="import convtools from this folder instead (e.g. to measure a patch)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write bench.png")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill in the defaults that depend on ``--quick``."""
    p = _parser()
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
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = set(a.sections) - set(SECTION_NAMES)
    if bad:
        p.error(f"unknown section(s) {sorted(bad)}")
    return a


def _configure(args: argparse.Namespace) -> None:
    """Thread variables, OpenMP's wait policy and the convtools to import, before torch."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.omp_wait_policy.lower() != "inherit":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # read when OpenMP starts
    if args.convtools_path:
        sys.path.insert(0, str(Path(args.convtools_path).resolve()))


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections, print the tables and targets, write the outputs."""
    args = parse_args(argv)
    _configure(args)
    import torch  # noqa: F401, PLC0415  (imported here once: forked children start warm)

    import convtools  # noqa: PLC0415
    from benchmarks.report import plot, table_lines, target_lines, write_outputs  # noqa: PLC0415
    from benchmarks.sections import SECTIONS  # noqa: PLC0415
    from benchmarks.targets import check_agreement, evaluate_targets  # noqa: PLC0415

    out = Path(args.out)
    print(f"convtools from {Path(convtools.__file__).parent}", flush=True)
    print(
        f"benchmark: {args.threads} threads (OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), {args.dtype}, repeats "
        f"{args.repeats}, budget {args.budget:g} s per route, output {out}",
        flush=True,
    )
    t0 = time.perf_counter()
    records: list = []
    for name in SECTION_NAMES:
        if name in args.sections:
            SECTIONS[name](args, records)
    targets = evaluate_targets(records, args.loader_items)
    lines = table_lines(records) + [""] + check_agreement(records, args.dtype)
    lines += target_lines(targets)
    lines.append(f"total benchmark time {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines), flush=True)
    write_outputs(args, records, targets, lines, out)
    if not args.no_plot:
        try:
            plot(records, args.channels, args.n, out)
        except Exception as exc:  # noqa: BLE001  (a missing plot must not lose the results)
            print(f"plot failed: {type(exc).__name__}: {exc}")
    print(
        f"wrote {out / 'results.json'}, results.csv, table.txt"
        + ("" if args.no_plot else ", bench.png")
    )
    return 0
