"""Second-order statistics S and N of the conv-to-conv growth problem.

Two formulations (DESIGN §3), both sums over samples and positions (not means):

- ``kind="tiny"`` (TINY / gromo): ``S_tiny = Σ_{i,m,e} X[i,m,:,e] X[i,m,:,e]ᵀ`` of shape
  (A, A) and ``N_tiny[a, c E + e] = Σ_{i,m} X[i,m,a,e] v[i,c,m]`` of shape (A, C[+1] E).
  Neither T nor X is built: ``S_tiny = Σ_i B_i diag(c) B_iᵀ`` where ``c(l)`` counts the
  reads of intermediate position l by conv2, and ``N_tiny`` is conv2's weight gradient
  with B, viewed as an A-channel image, as input (DESIGN §4.8).
- ``kind="full"`` (full linearization): ``S_full = X_Fᵀ X_F`` of shape (A E, A E) and
  ``N_full = X_Fᵀ Y_F`` of shape (A E, C[+1]), rows and columns indexed ``a E + e``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import (
    check_conv_pair,
    check_image,
    check_matrix,
    check_positive_int,
    check_tensor,
)
from .geometry import conv_output_size, unfold_input

__all__ = [
    "CHUNK_ELEMENTS",
    "KINDS",
    "StatisticsAccumulator",
    "n_full_to_tiny",
    "n_tiny_to_full",
    "objective",
    "read_counts",
    "s_tiny_from_full",
    "statistics",
    "theta_from_tiny",
    "theta_to_tiny",
    "tiny_objective",
]

KINDS = ("tiny", "full")


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def _check_goal(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
                v_goal: object) -> tuple[tuple[int, int], torch.Tensor]:
    """Check x and v_goal against the pair; return conv1's output size and v_goal."""
    conv1, conv2 = check_conv_pair(conv1, conv2)
    x = check_image("x", x, conv1.in_channels)
    hw1 = conv_output_size(tuple(x.shape[-2:]), conv1)
    hw2 = conv_output_size(hw1, conv2)
    v_goal = check_image("v_goal", v_goal)
    expected = (x.shape[0], conv2.out_channels, *hw2)
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
    return hw1, v_goal


def read_counts(input_hw: tuple[int, int], conv: torch.nn.Conv2d,
                dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
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
    geometry = {"kernel_size": conv.kernel_size, "dilation": conv.dilation,
                "padding": conv.padding, "stride": conv.stride}
    ones = torch.ones((1, 1, *input_hw), dtype=dtype, device=device)
    return F.fold(F.unfold(ones, **geometry), output_size=input_hw, **geometry).flatten()


def _tiny(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
          v_goal: torch.Tensor, hw1: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    b = unfold_input(x, conv1)  # (n, A, L)
    n, a, _ = b.shape
    counts = read_counts(hw1, conv2, dtype=b.dtype, device=b.device)
    weighted = b * counts.sqrt()
    s = torch.einsum("ial, ibl -> ab", weighted, weighted)
    grad = torch.nn.grad.conv2d_weight(
        b.reshape(n, a, *hw1),
        (conv2.out_channels, a, *conv2.kernel_size),
        v_goal,
        stride=conv2.stride,
        padding=conv2.padding,
        dilation=conv2.dilation,
    )  # (C[+1], A, kh, kw)
    return s, grad.permute(1, 0, 2, 3).reshape(a, -1)


def _full(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
          v_goal: torch.Tensor, hw1: tuple[int, int], chunk_elements: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """S_full, N_full by unfolding B again, a chunk of samples or of output rows at a time.

    X_F is never held whole: each chunk of X has at most about ``chunk_elements`` entries
    (one output row of one sample at the least), so memory does not grow with the image.
    """
    b = unfold_input(x, conv1)  # (n, A, L)
    n, a = b.shape[:2]
    (kh, kw), (sh, _), (ph, pw), (dh, _) = (conv2.kernel_size, conv2.stride, conv2.padding,
                                            conv2.dilation)
    # conv2's zero padding applied once, so that bands of rows can be unfolded without it.
    padded = F.pad(b.reshape(n, a, *hw1), (pw, pw, ph, ph))
    h2, w2 = conv_output_size(hw1, conv2)
    ae = a * kh * kw
    per_row = ae * w2
    samples = max(1, min(n, chunk_elements // (per_row * h2)))
    rows = h2 if samples > 1 else max(1, min(h2, chunk_elements // per_row))
    geometry = {"kernel_size": conv2.kernel_size, "dilation": conv2.dilation,
                "stride": conv2.stride}
    s = torch.zeros((ae, ae), dtype=b.dtype, device=b.device)
    n_sum = torch.zeros((ae, v_goal.shape[1]), dtype=b.dtype, device=b.device)
    for i0 in range(0, n, samples):
        i1 = min(n, i0 + samples)
        for r0 in range(0, h2, rows):
            r1 = min(h2, r0 + rows)
            band = padded[i0:i1, :, r0 * sh: (r1 - 1) * sh + dh * (kh - 1) + 1]
            u = F.unfold(band, **geometry)  # (i1 - i0, A E, (r1 - r0) W[+1])
            v = v_goal[i0:i1, :, r0:r1].flatten(2)
            if i1 - i0 > 1:
                u = u.transpose(0, 1).reshape(ae, -1)
                v = v.transpose(0, 1).reshape(v.shape[1], -1)
            else:
                u, v = u[0], v[0]
            s.addmm_(u, u.T)
            n_sum.addmm_(u, v.T)
    return s, n_sum


CHUNK_ELEMENTS = 2**24


def statistics(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d,
               v_goal: torch.Tensor, kind: str = "tiny", *,
               chunk_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
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
        full only: X is built a chunk of samples (or of conv2 output rows) at a time, each
        chunk of about this many entries at most, so that memory stays bounded

    Returns
    -------
    S : torch.Tensor
        (A, A) for tiny, (A E, A E) for full
    N : torch.Tensor
        (A, C[+1] E) for tiny, (A E, C[+1]) for full
    """
    kind = _check_kind(kind)
    check_positive_int("chunk_elements", chunk_elements)
    hw1, v_goal = _check_goal(x, conv1, conv2, v_goal)
    with torch.no_grad():
        if kind == "tiny":
            return _tiny(x, conv1, conv2, v_goal, hw1)
        return _full(x, conv1, conv2, v_goal, hw1, chunk_elements)


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
        count = torch.tensor([float(self.n_samples)], dtype=torch.float64,
                             device=self.S.device)
        for tensor in (self.S, self.N, self.v_sq_norm, count):
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        self.n_samples = int(count.item())
        self._synchronized = True
        return self


def n_full_to_tiny(n_full: torch.Tensor, e: int) -> torch.Tensor:
    """Rearrange N_full (A E, C) into N_tiny (A, C E): the same numbers (DESIGN §4.2)."""
    n_full = check_matrix("n_full", n_full)
    if n_full.shape[0] % e:
        raise ValueError(f"n_full has {n_full.shape[0]} rows, not a multiple of E = {e}")
    a, c = n_full.shape[0] // e, n_full.shape[1]
    return n_full.reshape(a, e, c).permute(0, 2, 1).reshape(a, c * e)


def n_tiny_to_full(n_tiny: torch.Tensor, e: int) -> torch.Tensor:
    """Rearrange N_tiny (A, C E) into N_full (A E, C)."""
    n_tiny = check_matrix("n_tiny", n_tiny)
    if n_tiny.shape[1] % e:
        raise ValueError(f"n_tiny has {n_tiny.shape[1]} columns, not a multiple of E = {e}")
    a, c = n_tiny.shape[0], n_tiny.shape[1] // e
    return n_tiny.reshape(a, c, e).permute(0, 2, 1).reshape(a * e, c)


def s_tiny_from_full(s_full: torch.Tensor, e: int) -> torch.Tensor:
    """``S_tiny = Σ_e S_full[(·, e), (·, e)]``: the diagonal blocks summed (DESIGN §4.3).

    Parameters
    ----------
    s_full : torch.Tensor
        (A E, A E)
    e : int
        number of kernel positions E of conv2

    Returns
    -------
    torch.Tensor
        (A, A)
    """
    s_full = check_matrix("s_full", s_full)
    if s_full.shape[0] != s_full.shape[1] or s_full.shape[0] % e:
        raise ValueError(f"s_full must be square of size A*E with E = {e}, "
                         f"got shape {tuple(s_full.shape)}")
    a = s_full.shape[0] // e
    return torch.einsum("aebe -> ab", s_full.reshape(a, e, a, e))


def theta_to_tiny(theta: torch.Tensor) -> torch.Tensor:
    """Θ (A, E, C) as the (A) × (C E) matrix whose rank counts channels (column c E + e)."""
    theta = check_tensor("theta", theta)
    if theta.dim() != 3:
        raise ValueError(f"theta must have shape (A, E, C), got {tuple(theta.shape)}")
    return theta.permute(0, 2, 1).reshape(theta.shape[0], -1)


def theta_from_tiny(theta_tiny: torch.Tensor, e: int) -> torch.Tensor:
    """Inverse of :func:`theta_to_tiny`: (A, C E) -> (A, E, C)."""
    theta_tiny = check_matrix("theta_tiny", theta_tiny)
    if theta_tiny.shape[1] % e:
        raise ValueError(f"theta_tiny has {theta_tiny.shape[1]} columns, not a multiple of "
                         f"E = {e}")
    a, c = theta_tiny.shape[0], theta_tiny.shape[1] // e
    return theta_tiny.reshape(a, c, e).permute(0, 2, 1)


def objective(theta: torch.Tensor, s_full: torch.Tensor, n_full: torch.Tensor,
              v_sq_norm: float | torch.Tensor = 0.0) -> torch.Tensor:
    """True least-squares objective ``‖v‖² − 2⟨N_full, Θ⟩ + ⟨Θ, S_full Θ⟩`` (DESIGN §4.2).

    Equals ``‖v_goal − conv2_ω(conv1_α(x))‖²`` for the Θ of the new neurons.

    Parameters
    ----------
    theta : torch.Tensor
        Θ, shape (A, E, C) or (A E, C)
    s_full, n_full : torch.Tensor
        (A E, A E) and (A E, C)
    v_sq_norm : float | torch.Tensor
        ‖v_goal‖²; with the default 0 the result is the objective minus that constant

    Returns
    -------
    torch.Tensor
        0-d tensor
    """
    theta = check_tensor("theta", theta)
    theta = theta.reshape(-1, theta.shape[-1])
    s_full = check_matrix("s_full", s_full, (theta.shape[0], theta.shape[0]))
    n_full = check_matrix("n_full", n_full, tuple(theta.shape))
    return v_sq_norm - 2 * (n_full * theta).sum() + (theta * (s_full @ theta)).sum()


def tiny_objective(theta_tiny: torch.Tensor, s_tiny: torch.Tensor, n_tiny: torch.Tensor,
                   v_sq_norm: float | torch.Tensor = 0.0) -> torch.Tensor:
    """TINY's surrogate ``‖v‖² − 2⟨N_tiny, Θ_t⟩ + ⟨Θ_t, S_tiny Θ_t⟩`` with Θ_t (A, C E).

    Its exact minimizer under rank ≤ k is the closed form of
    :func:`convtools.optimal_added_parameters`; it equals :func:`objective` only when conv2
    is 1×1 (DESIGN §4.3).
    """
    theta_tiny = check_matrix("theta_tiny", theta_tiny)
    s_tiny = check_matrix("s_tiny", s_tiny, (theta_tiny.shape[0], theta_tiny.shape[0]))
    n_tiny = check_matrix("n_tiny", n_tiny, tuple(theta_tiny.shape))
    return (v_sq_norm - 2 * (n_tiny * theta_tiny).sum()
            + (theta_tiny * (s_tiny @ theta_tiny)).sum())
