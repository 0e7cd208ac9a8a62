"""Row-product machinery of the statistics: banded unfolds and shifted row products.

Private helpers of :mod:`convtools.stats` (no argument checks).
"""

from __future__ import annotations

import torch


def _assemble(s6: torch.Tensor, blocks: dict, dilation: int) -> None:
    """Write the symmetric S, viewed as (R, kh, kw, R, kh, kw), from its row-pair blocks.

    ``blocks[(d u, d u')]`` holds the (R kw, R kw) block of kernel rows (u, u') for
    u <= u' (only its leading R kw rows and columns are used); the other half is its
    transpose. Shared by the tiny (R = C[-1], conv1's rows) and full (R = A, conv2's rows)
    statistics.
    """
    rows, kh, kw = s6.shape[:3]
    for u in range(kh):
        for u2 in range(u, kh):
            block = blocks[(dilation * u, dilation * u2)][: rows * kw, : rows * kw]
            block = block.reshape(rows, kw, rows, kw)
            s6[:, u, :, :, u2, :] = block
            if u2 != u:
                s6[:, u2, :, :, u, :] = block.permute(2, 3, 0, 1)


def _runs(values: list) -> list[tuple[int, int, float]]:
    """Maximal runs ``(r0, r1, value)`` of equal entries of a list."""
    out, r0 = [], 0
    for r in range(1, len(values) + 1):
        if r == len(values) or values[r] != values[r0]:
            out.append((r0, r, values[r0]))
            r0 = r
    return out


def _row_products(
    p: torch.Tensor,
    q: torch.Tensor,
    pairs: list[tuple[int, int]],
    n_rows: int,
    sp: int,
    sq: int,
    out: dict,
    weight: list | None = None,
) -> None:
    """``out[(a, b)] += Σ_{r < n_rows} w[r] P[:, r sp + a] Q[:, r sq + b]ᵀ`` for each pair.

    P (dp, RP, K) and Q (dq, RQ, K) hold rows in dim 1, contiguous with dim 2, so that a
    range of rows is a (d, rows K) matrix view. ``weight``: None (all 1) or n_rows numbers,
    constant over long runs. With unit strides, pairs of equal shift ``b - a`` share one
    product over the rows common to all of them (the core), plus a few border rows each.
    """

    def rows(t: torch.Tensor, lo: int, hi: int, step: int = 1) -> torch.Tensor:
        return t[:, lo:hi:step].reshape(t.shape[0], -1)  # a view when step == 1

    runs = [(0, n_rows, 1.0)] if weight is None else _runs(weight)
    if sp == 1 and sq == 1:
        groups: dict = {}
        for a, b in pairs:
            groups.setdefault(b - a, []).append(a)
        for d, starts in groups.items():
            lo_a, hi_a = min(starts), max(starts)
            for r0, r1, w in runs:
                if w == 0:
                    continue
                lo, hi = r0 + hi_a, r1 + lo_a  # P rows used by every pair of the group
                share = len(starts) > 1 and hi - lo >= 2 * (hi_a - lo_a)
                core = rows(p, lo, hi) @ rows(q, lo + d, hi + d).T if share else None
                for a in starts:
                    acc = out[(a, a + d)]
                    if share:
                        acc.add_(core, alpha=w)
                        segments = ((r0 + a, lo), (hi, r1 + a))
                    else:
                        segments = ((r0 + a, r1 + a),)
                    for s0, s1 in segments:
                        if s1 > s0:
                            acc.addmm_(rows(p, s0, s1), rows(q, s0 + d, s1 + d).T, alpha=w)
        return
    taken: dict = {}
    for r0, r1, w in runs:
        if w == 0:
            continue
        for a, b in pairs:
            if ("p", a, r0) not in taken:
                taken[("p", a, r0)] = rows(p, r0 * sp + a, (r1 - 1) * sp + a + 1, sp)
            if ("q", b, r0) not in taken:
                taken[("q", b, r0)] = rows(q, r0 * sq + b, (r1 - 1) * sq + b + 1, sq)
            out[(a, b)].addmm_(taken[("p", a, r0)], taken[("q", b, r0)].T, alpha=w)


def _reads_1d(n_in: int, k: int, d: int, s: int, pad: int, n_out: int) -> list[int]:
    """Along one axis: how many (output, kernel) index pairs read input index l."""
    counts = [0] * n_in
    for r in range(n_out):
        for u in range(k):
            index = r * s - pad + d * u
            if 0 <= index < n_in:
                counts[index] += 1
    return counts


def _width_unfold(
    dst: torch.Tensor, src: torch.Tensor, kw: int, dw: int, sw: int, row0: int
) -> None:
    """``dst[ch, w, p, i, t] = src[i, ch, row0 + p, t sw + w dw]``, src (n, ch, R, W)."""
    s0, s1, s2, s3 = src.stride()
    dst.copy_(
        src.as_strided(dst.shape, (s1, dw * s3, s2, s0, sw * s3), src.storage_offset() + row0 * s2)
    )


def _band_plan(n: int, per_sample_row: int, n_rows: int, halo: int, budget: int) -> tuple[int, int]:
    """(samples per band, rows per band) so that a band has at most about ``budget`` entries."""
    per_sample = per_sample_row * (n_rows + halo)
    if per_sample <= budget:
        return max(1, min(n, budget // per_sample)), n_rows
    return 1, max(1, budget // per_sample_row - halo)
