"""Second-order statistics S and N of the conv-to-conv growth problem.

Two formulations (notebook 03), both sums over samples and positions (not means):

- ``kind="tiny"`` (TINY / gromo): ``S_tiny = Σ_{i,m,e} X[i,m,:,e] X[i,m,:,e]ᵀ`` of shape
  (A, A) and ``N_tiny[a, c E + e] = Σ_{i,m} X[i,m,a,e] v[i,c,m]`` of shape (A, C[+1] E).
  Neither T nor X is built: ``S_tiny = Σ_i B_i diag(c) B_iᵀ`` where ``c(l)`` counts the
  reads of intermediate position l by conv2, and ``N_tiny`` is conv2's weight gradient
  with B, viewed as an A-channel image, as input; both are computed as sums
  of row-shifted products (see ``_tiny``).
- ``kind="full"`` (full linearization): ``S_full = X_Fᵀ X_F`` of shape (A E, A E) and
  ``N_full = X_Fᵀ Y_F`` of shape (A E, C[+1]), rows and columns indexed ``a E + e``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._bands import _assemble, _band_plan, _reads_1d, _row_products, _width_unfold
from ._checks import check_conv_pair, check_image, check_positive_int
from .geometry import PairGeometry, conv_output_size

__all__ = [
    "CHUNK_ELEMENTS",
    "KINDS",
    "StatisticsAccumulator",
    "read_counts",
    "statistics",
]

KINDS = ("tiny", "full")


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def check_goal(x: object, conv1: object, conv2: object, v_goal: object) -> PairGeometry:
    """Check x, the pair and v_goal = the desired change of conv2(conv1(x)).

    Returns
    -------
    PairGeometry
        the geometry of the pair for this input
    """
    conv1, conv2 = check_conv_pair(conv1, conv2)
    x = check_image("x", x, conv1.in_channels)
    geometry = PairGeometry.of(x, conv1, conv2)
    v_goal = check_image("v_goal", v_goal)
    expected = (x.shape[0], conv2.out_channels, *geometry.hw2)
    if tuple(v_goal.shape) != expected:
        raise ValueError(
            f"v_goal must have the shape of conv2(conv1(x)), {expected}, "
            f"got {tuple(v_goal.shape)} (x has shape {tuple(x.shape)})"
        )
    if v_goal.dtype != x.dtype or v_goal.device != x.device:
        raise TypeError(
            f"v_goal ({v_goal.dtype}, {v_goal.device}) must have the dtype and device of x "
            f"({x.dtype}, {x.device})"
        )
    return geometry


def read_counts(
    input_hw: tuple[int, int],
    conv: torch.nn.Conv2d,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """How many (output position, kernel position) pairs of ``conv`` read each input position.

    ``c(l) = Σ_{m,e} T[m, e, l]``, computed as fold(unfold(ones)) without T.

    Parameters
    ----------
    input_hw : tuple[int, int]
        input size (H, W) of ``conv``
    conv : torch.nn.Conv2d
        the convolution (conv2 of the pair)
    dtype, device
        of the result

    Returns
    -------
    torch.Tensor
        c, shape (H * W,)
    """
    conv_output_size(input_hw, conv)
    geometry = {
        "kernel_size": conv.kernel_size,
        "dilation": conv.dilation,
        "padding": conv.padding,
        "stride": conv.stride,
    }
    ones = torch.ones((1, 1, *input_hw), dtype=dtype, device=device)
    return F.fold(F.unfold(ones, **geometry), output_size=input_hw, **geometry).flatten()


# S and N are sums over rows of products of two "row-stacked" matrices: the kernel rows of
# a convolution only shift the row index of an input that is unfolded along the width
# alone. Pairs of kernel rows with the same shift share one product over the rows common to
# all of them, and only a few border rows differ. Temporaries are strided copies of (padded)
# x and v_goal, a band of samples and rows at a time, none larger than ``chunk_elements``
# entries: neither T nor X (nor B for a whole batch) ever exists, and small buffers are
# reused by the allocator instead of being mapped afresh at every call.


def _tiny(
    x: torch.Tensor, v_goal: torch.Tensor, g: PairGeometry, chunk_elements: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """S_tiny = Σ_l c(l) B[:, l] B[:, l]ᵀ and N_tiny = Σ_l B[:, l] U[:, l]ᵀ by row products.

    ``B[(c, u, w), q, t] = x̃[c, q s + d u, t s' + d' w]`` (x̃: x with conv1's padding): x
    unfolded along the width alone (channels (c, w)), the kernel row u only shifting the
    row. ``U[(c, e'), l] = v_goal[c, m]`` for the output position m that reads l with
    kernel position e (e' = E − 1 − e): v_goal placed on conv1's output grid and unfolded
    with conv2's kernel, which is a row shift again. The read counts factor,
    ``c(q, t) = c_rows(q) c_cols(t)``: √c_cols weighs both sides of S (and 1/√c_cols the U
    side of N, U vanishing where c does), c_rows is constant on long runs of rows.
    """
    kh1, kw1, dh1, dw1, sh1, sw1, ph1, pw1 = g.conv1
    kh2, kw2, dh2, dw2, sh2, sw2, ph2, pw2 = g.conv2
    n, c0, c2, bias = g.n, g.c0, g.c2, g.bias
    (h1, w1), (h2, w2) = g.hw1, g.hw2
    kind = {"dtype": x.dtype, "device": x.device}
    reads_rows = _reads_1d(h1, kh2, dh2, sh2, ph2, h2)
    reads_cols = torch.tensor(_reads_1d(w1, kw2, dw2, sw2, pw2, w2), **kind)
    root = reads_cols.sqrt()
    inv_root = torch.where(reads_cols > 0, 1 / root.clamp_min(1e-30), torch.zeros_like(root))
    padded = F.pad(x, (pw1, pw1, ph1, ph1)) if (ph1 or pw1) else x
    # v_goal on conv1's output grid: up[c, m_r sh2 + top, m_s sw2 + left] = v_goal[c, m], so
    # that U[(c, u', w'), q, t] = up[c, q + dh2 u', t + dw2 w'], (u', w') = (kh2-1-u, kw2-1-w)
    top, left = dh2 * (kh2 - 1) - ph2, dw2 * (kw2 - 1) - pw2
    hv, wv = h1 + dh2 * (kh2 - 1), w1 + dw2 * (kw2 - 1)
    if sh2 == 1 and sw2 == 1:  # a pad (or a crop, where conv2 reads only padding)
        up = F.pad(v_goal, (left, wv - w2 - left, top, hv - h2 - top))
    else:
        up = torch.zeros((n, c2, hv, wv), **kind)
        rr = torch.arange(h2, device=x.device) * sh2 + top
        cc = torch.arange(w2, device=x.device) * sw2 + left
        keep_r, keep_c = (rr >= 0) & (rr < hv), (cc >= 0) & (cc < wv)
        up[:, :, rr[keep_r][:, None], cc[keep_c][None, :]] = v_goal[:, :, keep_r][:, :, :, keep_c]
    dx = c0 * kw1 + bias  # x unfolded along the width, plus a constant channel for the bias
    dv = c2 * kw2
    halo = max(dh1 * (kh1 - 1), dh2 * (kh2 - 1))
    samples, band = _band_plan(n, (dx * sh1 + dv) * w1, h1, halo, chunk_elements)
    s_pairs = [(dh1 * u, dh1 * u2) for u in range(kh1) for u2 in range(u, kh1)]
    n_pairs = [(dh1 * u, dh2 * u2) for u in range(kh1) for u2 in range(kh2)]
    s_blocks = {pair: torch.zeros((dx, dx), **kind) for pair in s_pairs}
    n_blocks = {pair: torch.zeros((dx, dv), **kind) for pair in n_pairs}
    for i0 in range(0, n, samples):
        i1 = min(n, i0 + samples)
        for q0 in range(0, h1, band):
            q1 = min(h1, q0 + band)
            x_rows = (q1 - q0 - 1) * sh1 + dh1 * (kh1 - 1) + 1
            xw = torch.empty((dx, x_rows, i1 - i0, w1), **kind)
            _width_unfold(
                xw[: c0 * kw1].unflatten(0, (c0, kw1)), padded[i0:i1], kw1, dw1, sw1, q0 * sh1
            )
            if bias:
                xw[-1].fill_(1)
            xw.mul_(root)
            v_rows = q1 - q0 + dh2 * (kh2 - 1)
            vw = torch.empty((dv, v_rows, i1 - i0, w1), **kind)
            _width_unfold(vw.unflatten(0, (c2, kw2)), up[i0:i1], kw2, dw2, 1, q0)
            vw.mul_(inv_root)
            xw, vw = xw.flatten(2), vw.flatten(2)
            _row_products(xw, xw, s_pairs, q1 - q0, sh1, sh1, s_blocks, reads_rows[q0:q1])
            _row_products(xw, vw, n_pairs, q1 - q0, sh1, 1, n_blocks)
    # S (A, A) with a = (c, u, w), the bias last; N (A, C[+1] E) with column c E + e.
    a_main = c0 * kh1 * kw1
    s = torch.empty((a_main + bias, a_main + bias), **kind)
    _assemble(s[:a_main, :a_main].view(c0, kh1, kw1, c0, kh1, kw1), s_blocks, dh1)
    if bias:
        for u in range(kh1):
            row = s_blocks[(0, dh1 * u)][-1, : c0 * kw1].reshape(c0, kw1)
            s[-1, :a_main].view(c0, kh1, kw1)[:, u] = row
        s[:a_main, -1] = s[-1, :a_main]
        s[-1, -1] = s_blocks[(0, 0)][-1, -1]
    n_out = torch.empty((a_main + bias, c2, kh2, kw2), **kind)
    n6 = n_out[:a_main].view(c0, kh1, kw1, c2, kh2, kw2)
    for u in range(kh1):
        for u2 in range(kh2):
            block = n_blocks[(dh1 * u, dh2 * u2)]
            n6[:, u, :, :, kh2 - 1 - u2, :] = block[: c0 * kw1].reshape(c0, kw1, c2, kw2).flip(-1)
            if bias and u == 0:
                n_out[-1, :, kh2 - 1 - u2, :] = block[-1].reshape(c2, kw2).flip(-1)
    return s, n_out.reshape(a_main + bias, c2 * kh2 * kw2)


def _full(
    x: torch.Tensor, v_goal: torch.Tensor, g: PairGeometry, chunk_elements: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """S_full, N_full by row products of B unfolded along the width with conv2's kernel.

    With R[(a, w), p, t] = B̃[a, p, t s' + d' w] (B̃: B with conv2's zero padding),
    ``S_full[(a, u, w), (a', u', w')] = Σ_r R[(a, w), r s + d u] R[(a', w'), r s + d u']`` and
    ``N_full[(a, u, w), c] = Σ_r R[(a, w), r s + d u] v[c, r]`` (sums also over samples and
    columns). B and R are built a band of samples and output rows at a time.
    """
    kh1, kw1, dh1, dw1, sh1, sw1, ph1, pw1 = g.conv1
    kh2, kw2, dh2, dw2, sh2, sw2, ph2, pw2 = g.conv2
    n, c0, c2, bias = g.n, g.c0, g.c2, g.bias
    (h1, w1), (h2, w2) = g.hw1, g.hw2
    kind = {"dtype": x.dtype, "device": x.device}
    a = c0 * kh1 * kw1 + bias
    d2 = a * kw2
    padded = F.pad(x, (pw1, pw1, ph1, ph1)) if (ph1 or pw1) else x
    halo = dh2 * (kh2 - 1)
    samples, band = _band_plan(n, (d2 + a) * w2 * sh2, h2, halo, chunk_elements)
    s_pairs = [(dh2 * u, dh2 * u2) for u in range(kh2) for u2 in range(u, kh2)]
    n_pairs = [(dh2 * u, 0) for u in range(kh2)]
    s_blocks = {pair: torch.zeros((d2, d2), **kind) for pair in s_pairs}
    n_blocks = {pair: torch.zeros((d2, c2), **kind) for pair in n_pairs}
    for i0 in range(0, n, samples):
        i1 = min(n, i0 + samples)
        for r0 in range(0, h2, band):
            r1 = min(h2, r0 + band)
            p0, p1 = r0 * sh2, (r1 - 1) * sh2 + halo + 1  # rows of B̃ read by the band
            q0, q1 = max(0, p0 - ph2), min(h1, p1 - ph2)  # of which inside B
            b = torch.zeros((i1 - i0, a, p1 - p0, w1 + 2 * pw2), **kind)
            if q1 > q0:
                inner = b[:, :, q0 + ph2 - p0 : q1 + ph2 - p0, pw2 : pw2 + w1]
                s0, s1, s2, s3 = padded.stride()
                source = padded.as_strided(
                    (i1 - i0, c0, kh1, kw1, q1 - q0, w1),
                    (s0, s1, dh1 * s2, dw1 * s3, sh1 * s2, sw1 * s3),
                    padded.storage_offset() + i0 * s0 + q0 * sh1 * s2,
                )
                inner[:, : c0 * kh1 * kw1].unflatten(1, (c0, kh1, kw1)).copy_(source)
                if bias:
                    inner[:, -1].fill_(1)
            r = torch.empty((a, kw2, p1 - p0, i1 - i0, w2), **kind)
            _width_unfold(r, b, kw2, dw2, sw2, 0)
            del b
            r = r.reshape(d2, p1 - p0, -1)
            v = v_goal[i0:i1, :, r0:r1].permute(1, 2, 0, 3).reshape(c2, r1 - r0, -1)
            _row_products(r, r, s_pairs, r1 - r0, sh2, sh2, s_blocks)
            _row_products(r, v, n_pairs, r1 - r0, sh2, 1, n_blocks)
    e = kh2 * kw2
    s6 = torch.empty((a, kh2, kw2, a, kh2, kw2), **kind)
    _assemble(s6, s_blocks, dh2)
    n4 = torch.empty((a, kh2, kw2, c2), **kind)
    for u in range(kh2):
        n4[:, u] = n_blocks[(dh2 * u, 0)].reshape(a, kw2, c2)
    return s6.reshape(a * e, a * e), n4.reshape(a * e, c2)


CHUNK_ELEMENTS = 2**22


def statistics(
    x: torch.Tensor,
    conv1: torch.nn.Conv2d,
    conv2: torch.nn.Conv2d,
    v_goal: torch.Tensor,
    kind: str = "tiny",
    *,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Statistics S and N of one batch (sums over samples and positions).

    Parameters
    ----------
    x : torch.Tensor
        input of conv1, shape (n, C[-1], H[-1], W[-1])
    conv1, conv2 : torch.nn.Conv2d
        the two consecutive convolutions the new neurons go between
    v_goal : torch.Tensor
        desired update of conv2's output, shape (n, C[+1], H[+1], W[+1])
    kind : {"tiny", "full"}
        which formulation (see the module docstring)
    chunk_elements : int
        the unfolded inputs are built a band of samples (or of rows) at a time, each band
        of about this many entries at most, so that memory stays bounded (and small
        buffers are reused instead of being mapped afresh)

    Returns
    -------
    S : torch.Tensor
        (A, A) for tiny, (A E, A E) for full
    N : torch.Tensor
        (A, C[+1] E) for tiny, (A E, C[+1]) for full
    """
    kind = _check_kind(kind)
    check_positive_int("chunk_elements", chunk_elements)
    geometry = check_goal(x, conv1, conv2, v_goal)
    return _statistics(x, v_goal, geometry, kind, chunk_elements)


def _statistics(
    x: torch.Tensor,
    v_goal: torch.Tensor,
    geometry: PairGeometry,
    kind: str = "tiny",
    chunk_elements: int = CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`statistics` without the checks."""
    with torch.no_grad():
        if kind == "tiny":
            return _tiny(x, v_goal, geometry, chunk_elements)
        return _full(x, v_goal, geometry, chunk_elements)


class StatisticsAccumulator:
    """Sums S, N and ‖v‖² over batches, so that a data set never sits in memory.

    Parameters
    ----------
    conv1, conv2 : torch.nn.Conv2d
        the two consecutive convolutions
    kind : {"tiny", "full"}
        which statistics to accumulate

    Attributes
    ----------
    S, N : torch.Tensor | None
        the sums so far (shapes of :func:`statistics`), None before the first batch
    v_sq_norm : torch.Tensor | None
        Σ ‖v_goal‖² so far (a 0-d tensor)
    n_samples : int
        number of samples seen

    Examples
    --------
    >>> acc = StatisticsAccumulator(conv1, conv2, kind="tiny")  # doctest: +SKIP
    >>> for x, v in loader:                                      # doctest: +SKIP
    ...     acc.update(x, v)
    >>> acc.synchronize()   # sums over all processes when torch.distributed is initialized
    """

    def __init__(self, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d, kind: str = "tiny"):
        self.conv1, self.conv2 = check_conv_pair(conv1, conv2)
        self.kind = _check_kind(kind)
        self.S: torch.Tensor | None = None
        self.N: torch.Tensor | None = None
        self.v_sq_norm: torch.Tensor | None = None
        self.n_samples = 0
        self._synchronized = False

    def update(self, x: torch.Tensor, v_goal: torch.Tensor) -> StatisticsAccumulator:
        """Add the statistics of one batch (shapes as in :func:`statistics`)."""
        if self._synchronized:
            raise RuntimeError("update() after synchronize(): the sums are already global")
        s, n = statistics(x, self.conv1, self.conv2, v_goal, kind=self.kind)
        v_sq = v_goal.detach().square().sum()
        if self.S is None:
            self.S, self.N, self.v_sq_norm = s, n, v_sq
        else:
            if s.dtype != self.S.dtype or s.device != self.S.device:
                raise TypeError(
                    f"batch has dtype {s.dtype} on {s.device}, earlier batches had "
                    f"{self.S.dtype} on {self.S.device}"
                )
            self.S += s
            self.N += n
            self.v_sq_norm += v_sq
        self.n_samples += x.shape[0]
        return self

    def update_from(self, batches) -> StatisticsAccumulator:
        """Add every ``(x, v_goal)`` pair of an iterable, e.g. a ``DataLoader``."""
        for x, v_goal in batches:
            self.update(x, v_goal)
        return self

    def synchronize(self) -> StatisticsAccumulator:
        """All-reduce (sum) the statistics over the processes of the default group.

        Does nothing when ``torch.distributed`` is not initialized. Every process must call
        it, after at least one batch each; afterwards every process holds the statistics of
        the union of all batches.
        """
        if self._synchronized:
            raise RuntimeError("synchronize() was already called")
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self
        if self.S is None:
            raise RuntimeError("synchronize() before any update(): nothing to reduce")
        count = torch.tensor([float(self.n_samples)], dtype=torch.float64, device=self.S.device)
        for tensor in (self.S, self.N, self.v_sq_norm, count):
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        self.n_samples = int(count.item())
        self._synchronized = True
        return self
