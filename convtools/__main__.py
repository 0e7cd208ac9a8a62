"""``python -m convtools``: residuals of tiny, full and exact on a planted and a random target.

A quick self-check of the package: a planted target ``v = conv2'(conv1'(x))`` with k'
channels is fitted with k = k' new neurons by each method, then a random target (no
structure). Prints relative residuals ``‖new_conv2(new_conv1(x)) − v‖ / ‖v‖``.
"""

from __future__ import annotations

import argparse

import torch

from . import grow, relative_residual
from .layers import METHODS


def _pair(c0: int, c1: int, c2: int, kernel: int, bias: bool) -> tuple[torch.nn.Conv2d, ...]:
    pad = kernel // 2
    conv1 = torch.nn.Conv2d(c0, c1, kernel, padding=pad, bias=bias, dtype=torch.float64)
    conv2 = torch.nn.Conv2d(c1, c2, kernel, padding=pad, bias=False, dtype=torch.float64)
    return conv1, conv2


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, fit both targets with each method, print a table."""
    parser = argparse.ArgumentParser(prog="python -m convtools", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=32, help="number of samples")
    parser.add_argument("--size", type=int, default=12, help="image height and width")
    parser.add_argument(
        "--channels", type=int, nargs=3, default=(4, 8, 8), metavar=("C_IN", "C_MID", "C_OUT")
    )
    parser.add_argument("--kernel", type=int, default=3, help="kernel size of both convs")
    parser.add_argument("--k", type=int, default=4, help="new neurons (= planted channels)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    c0, c1, c2 = args.channels
    conv1, conv2 = _pair(c0, c1, c2, args.kernel, bias=True)
    teacher1, teacher2 = _pair(c0, args.k, c2, args.kernel, bias=True)
    x = torch.randn(args.n, c0, args.size, args.size, dtype=torch.float64)
    with torch.no_grad():
        planted = teacher2(teacher1(x))
    noise = torch.randn_like(planted)
    print(
        f"x {tuple(x.shape)}, conv1 {c0}->{c1}, conv2 {c1}->{c2}, "
        f"{args.kernel}x{args.kernel} kernels, k = {args.k}"
    )
    print(f"{'target':<10}" + "".join(f"{m:>12}" for m in METHODS))
    for name, target in (("planted", planted), ("random", noise)):
        row = []
        for method in METHODS:
            new1, new2 = grow(x, conv1, conv2, target, args.k, method=method)
            with torch.no_grad():
                row.append(relative_residual(new2(new1(x)), target))
        print(f"{name:<10}" + "".join(f"{r:>12.3g}" for r in row))


if __name__ == "__main__":
    main()
