"""Linearization of one and two 2-D convolutions.

A convolution is a matrix product on the unfolded input. Two consecutive convolutions,
without a non-linearity in between, are one linear map of the input unfolded twice::

    conv2(conv1(x))[i, c, m] = sum_{a, e} X[i, m, a, e] * theta[a, e, c]

with ``X = unfold_twice(x, conv1, conv2)`` and ``theta = product_kernel(conv1, conv2)``.

Notation (shapes): ``n`` samples; ``A = C[-1] * kh1 * kw1`` (+1 for the ones row, last,
when conv1 has a bias); ``E = kh2 * kw2``; ``L = H * W`` intermediate positions;
``M = H[+1] * W[+1]`` output positions of conv2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._checks import check_conv, check_conv_pair, check_image, check_tensor

__all__ = [
    "PairGeometry",
    "apply_product_kernel",
    "conv_output_size",
    "kernel_positions",
    "mask_tensor_t",
    "product_kernel",
    "unfold_input",
    "unfold_twice",
    "unfolded_pair",
]


def _geometry(conv: torch.nn.Conv2d) -> dict:
    return {
        "kernel_size": conv.kernel_size,
        "dilation": conv.dilation,
        "padding": conv.padding,
        "stride": conv.stride,
    }


def kernel_positions(conv: torch.nn.Conv2d) -> int:
    """Number of kernel positions ``kh * kw`` of ``conv`` (E for conv2, d for conv1)."""
    conv = check_conv("conv", conv)
    return conv.kernel_size[0] * conv.kernel_size[1]


def conv_output_size(input_hw: tuple[int, int], conv: torch.nn.Conv2d) -> tuple[int, int]:
    """Spatial size of the output of ``conv`` for an input of size ``input_hw``.

    Parameters
    ----------
    input_hw : tuple[int, int]
        input size (H, W)
    conv : torch.nn.Conv2d
        the convolution (its kernel size, stride, padding and dilation are used)

    Returns
    -------
    tuple[int, int]
        output size (H_out, W_out), with
        ``H_out = (H + 2 p - dil (k - 1) - 1) // stride + 1`` and likewise for W
    """
    conv = check_conv("conv", conv)
    if (
        not isinstance(input_hw, (tuple, list, torch.Size))
        or len(input_hw) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in input_hw)
    ):
        raise TypeError(f"input_hw must be a pair of ints (H, W), got {input_hw!r}")
    if min(input_hw) < 1:
        raise ValueError(f"input_hw must be positive, got {tuple(input_hw)}")
    return _output_size(tuple(input_hw), conv)


def _output_size(input_hw: tuple[int, int], conv: torch.nn.Conv2d) -> tuple[int, int]:
    """:func:`conv_output_size` without the argument checks (the size check stays)."""
    out = []
    for axis in range(2):
        size = (
            input_hw[axis]
            + 2 * conv.padding[axis]
            - conv.dilation[axis] * (conv.kernel_size[axis] - 1)
            - 1
        ) // conv.stride[axis] + 1
        out.append(size)
    if min(out) < 1:
        raise ValueError(
            f"input_hw {tuple(input_hw)} is too small for a kernel of size "
            f"{conv.kernel_size} with padding {conv.padding} and dilation {conv.dilation}: "
            f"the output would have size {tuple(out)}"
        )
    return out[0], out[1]


def unfold_input(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """Unfold ``x`` with the geometry of ``conv`` (the matrix B of the notation).

    Parameters
    ----------
    x : torch.Tensor
        input of ``conv``, shape (n, C_in, H_in, W_in)
    conv : torch.nn.Conv2d
        the convolution

    Returns
    -------
    torch.Tensor
        B, shape (n, A, H_out * W_out) with ``A = C_in * kh * kw`` (+1: a row of ones, last,
        when ``conv`` has a bias), such that
        ``conv(x).flatten(2) == einsum("ca, ial -> icl", W, B)`` where ``W`` is
        ``conv.weight.flatten(1)`` with the bias appended as last column.
    """
    conv = check_conv("conv", conv)
    x = check_image("x", x, conv.in_channels)
    return _unfold_input(x, conv)


def _unfold_input(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """:func:`unfold_input` without the checks."""
    h_out, w_out = _output_size(tuple(x.shape[-2:]), conv)
    (kh, kw), (dh, dw), (sh, sw), (ph, pw) = (
        conv.kernel_size,
        conv.dilation,
        conv.stride,
        conv.padding,
    )
    # One strided copy of the zero-padded input (F.unfold's im2col is several times slower
    # on the CPU): unfolded[i, (c, u, w), r, s] = padded[i, c, r sh + u dh, s sw + w dw].
    padded = F.pad(x, (pw, pw, ph, ph)) if (ph or pw) else x
    n, c = x.shape[:2]
    s0, s1, s2, s3 = padded.stride()
    windows = padded.as_strided(
        (n, c, kh, kw, h_out, w_out),
        (s0, s1, dh * s2, dw * s3, sh * s2, sw * s3),
        padded.storage_offset(),
    )
    bias = conv.bias is not None
    unfolded = torch.empty((n, c * kh * kw + bias, h_out, w_out), dtype=x.dtype, device=x.device)
    unfolded[:, : c * kh * kw].unflatten(1, (c, kh, kw)).copy_(windows)
    if bias:
        unfolded[:, -1].fill_(1)
    return unfolded.reshape(n, -1, h_out * w_out)


def mask_tensor_t(
    input_hw: tuple[int, int],
    conv: torch.nn.Conv2d,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The 0/1 mask tensor T of ``conv`` in gromo's convention, built without Python loops.

    ``T[m, e, l] = 1`` when output position ``m`` of ``conv`` reads input position ``l``
    with kernel position ``e``; positions read in the zero padding give an all-zero row.
    T has ``H_out W_out * kh kw * H_in W_in`` entries: use it only on small images.

    Parameters
    ----------
    input_hw : tuple[int, int]
        input size (H_in, W_in)
    conv : torch.nn.Conv2d
        the convolution
    dtype : torch.dtype
        dtype of the result, by default float32
    device : torch.device | str | None
        device of the result, by default the CPU

    Returns
    -------
    torch.Tensor
        T, shape (H_out * W_out, kh * kw, H_in * W_in)
    """
    h_out, w_out = conv_output_size(input_hw, conv)
    h_in, w_in = input_hw
    # 1-based position numbers, unfolded: 0 marks a read in the padding.
    numbers = torch.arange(1, h_in * w_in + 1, dtype=torch.float64, device=device)
    reads = F.unfold(numbers.reshape(1, 1, h_in, w_in), **_geometry(conv))[0]
    reads = reads.round().long()  # (E, M)
    n_e, n_m = reads.shape
    tensor_t = torch.zeros((n_m, n_e, h_in * w_in), dtype=dtype, device=device)
    e_idx, m_idx = torch.nonzero(reads > 0, as_tuple=True)
    tensor_t[m_idx, e_idx, reads[e_idx, m_idx] - 1] = 1
    assert tensor_t.shape == (h_out * w_out, n_e, h_in * w_in)
    return tensor_t


def unfold_twice(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d) -> torch.Tensor:
    """The tensor X = B T of two consecutive convolutions, computed without T.

    B (see :func:`unfold_input`) is viewed as an image of A channels on conv1's output grid
    and unfolded again with conv2's geometry (notebook 02). conv2's zero padding pads the
    ones row too: a padded read contributes nothing, bias included.

    Parameters
    ----------
    x : torch.Tensor
        input of conv1, shape (n, C[-1], H[-1], W[-1])
    conv1 : torch.nn.Conv2d
        first convolution
    conv2 : torch.nn.Conv2d
        second convolution, with ``conv2.in_channels == conv1.out_channels``

    Returns
    -------
    torch.Tensor
        X, shape (n, H[+1] W[+1], A, E): ``X[i, m, a, e] = B[i, a, l(m, e)]`` and 0 where
        conv2 reads padding. (A permuted view of a contiguous (n, A, E, M) tensor.)
    """
    conv1, conv2 = check_conv_pair(conv1, conv2)
    x = check_image("x", x, conv1.in_channels)
    return _unfolded_pair(x, conv1, conv2).permute(0, 3, 1, 2)


def unfolded_pair(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d) -> torch.Tensor:
    """X in its natural memory layout: shape (n, A, E, H[+1] W[+1]) (see :func:`unfold_twice`).

    Row ``a * E + e`` of ``result.flatten(1, 2)`` is the row of X_F's column ``a * E + e``.
    """
    conv1, conv2 = check_conv_pair(conv1, conv2)
    x = check_image("x", x, conv1.in_channels)
    return _unfolded_pair(x, conv1, conv2)


def _unfolded_pair(x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d) -> torch.Tensor:
    """:func:`unfolded_pair` without the checks."""
    b = _unfold_input(x, conv1)
    h1, w1 = _output_size(tuple(x.shape[-2:]), conv1)
    _output_size((h1, w1), conv2)
    n, a = b.shape[:2]
    u = F.unfold(b.reshape(n, a, h1, w1), **_geometry(conv2))
    return u.reshape(n, a, conv2.kernel_size[0] * conv2.kernel_size[1], u.shape[-1])


def product_kernel(conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d) -> torch.Tensor:
    """Product kernel Θ of two convolutions: ``Θ[a, e, c] = Σ_k W1[k, a] W2[c, k, e]``.

    Parameters
    ----------
    conv1 : torch.nn.Conv2d
        first convolution; its bias (if any) is the last column of W1
    conv2 : torch.nn.Conv2d
        second convolution; its own bias is not part of Θ

    Returns
    -------
    torch.Tensor
        Θ, shape (A, E, C[+1]), so that
        ``conv2(conv1(x)) - b2 == einsum("imae, aec -> icm", unfold_twice(x, conv1, conv2), Θ)``
    """
    conv1, conv2 = check_conv_pair(conv1, conv2)
    w1 = conv1.weight.flatten(1)
    if conv1.bias is not None:
        w1 = torch.cat([w1, conv1.bias[:, None]], dim=1)
    w2 = conv2.weight.flatten(2)  # (C[+1], C, E)
    return torch.einsum("ka, cke -> aec", w1, w2)


def apply_product_kernel(
    x_twice: torch.Tensor, theta: torch.Tensor, output_hw: tuple[int, int]
) -> torch.Tensor:
    """Apply the linear map ``X Θ`` and reshape it as conv2's output.

    Parameters
    ----------
    x_twice : torch.Tensor
        X, shape (n, M, A, E) (see :func:`unfold_twice`)
    theta : torch.Tensor
        Θ, shape (A, E, C[+1])
    output_hw : tuple[int, int]
        conv2's output size (H[+1], W[+1]) with ``H[+1] * W[+1] == M``

    Returns
    -------
    torch.Tensor
        shape (n, C[+1], H[+1], W[+1])
    """
    x_twice = check_tensor("x_twice", x_twice)
    theta = check_tensor("theta", theta)
    if x_twice.dim() != 4 or theta.dim() != 3 or x_twice.shape[2:] != theta.shape[:2]:
        raise ValueError(
            f"x_twice (n, M, A, E) and theta (A, E, C) must agree on (A, E): got shapes "
            f"{tuple(x_twice.shape)} and {tuple(theta.shape)}"
        )
    h, w = output_hw
    if h * w != x_twice.shape[1]:
        raise ValueError(
            f"output_hw {tuple(output_hw)} has {h * w} positions but x_twice has "
            f"M = {x_twice.shape[1]} (shape {tuple(x_twice.shape)})"
        )
    out = torch.einsum("imae, aec -> icm", x_twice, theta)
    return out.reshape(out.shape[0], out.shape[1], h, w)


@dataclass(frozen=True)
class PairGeometry:
    """Everything the statistics need to know about a pair of convolutions and an input.

    Attributes
    ----------
    n, c0, c2 : int
        samples, input channels of conv1 (C[-1]), output channels of conv2 (C[+1])
    bias : bool
        conv1 has a bias (A then counts a ones row)
    conv1, conv2 : tuple[int, ...]
        ``(kh, kw, dh, dw, sh, sw, ph, pw)`` of each convolution
    hw1, hw2 : tuple[int, int]
        output sizes of conv1 and of conv2
    """

    n: int
    c0: int
    c2: int
    bias: bool
    conv1: tuple[int, ...]
    conv2: tuple[int, ...]
    hw1: tuple[int, int]
    hw2: tuple[int, int]

    @classmethod
    def of(cls, x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d) -> PairGeometry:
        """The geometry of ``conv2(conv1(x))`` (arguments already checked)."""
        hw1 = _output_size(tuple(x.shape[-2:]), conv1)
        hw2 = _output_size(hw1, conv2)

        def numbers(conv: torch.nn.Conv2d) -> tuple[int, ...]:
            return (*conv.kernel_size, *conv.dilation, *conv.stride, *conv.padding)

        return cls(
            x.shape[0],
            x.shape[1],
            conv2.out_channels,
            conv1.bias is not None,
            numbers(conv1),
            numbers(conv2),
            hw1,
            hw2,
        )

    @property
    def a(self) -> int:
        """A = C[-1] kh1 kw1 (+1 with conv1's bias)."""
        return self.c0 * self.conv1[0] * self.conv1[1] + self.bias

    @property
    def e(self) -> int:
        """E = kh2 kw2."""
        return self.conv2[0] * self.conv2[1]
