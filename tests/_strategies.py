"""Hypothesis strategies for pairs of convolutions of random geometry."""

from __future__ import annotations

import torch
from hypothesis import assume
from hypothesis import strategies as st

import convtools as ct


@st.composite
def conv_geometry(draw, max_kernel: int = 5):
    """Keyword arguments of a Conv2d: kernel 1-5, stride 1-3, padding 0-2, dilation 1-2."""
    return {
        "kernel_size": (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))),
        "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "padding": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        "dilation": (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
    }


@st.composite
def conv_pairs(draw, max_kernel: int = 5, max_size: int = 12):
    """(x, conv1, conv2) in float64 with a valid output, conv1 with or without bias."""
    c0, c1, c2 = (draw(st.integers(1, 3)) for _ in range(3))
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(
        c0, c1, bias=draw(st.booleans()), dtype=torch.float64, **draw(conv_geometry(max_kernel))
    )
    conv2 = torch.nn.Conv2d(
        c1, c2, bias=draw(st.booleans()), dtype=torch.float64, **draw(conv_geometry(max_kernel))
    )
    try:
        ct.conv_output_size(ct.conv_output_size((h, w), conv1), conv2)
    except ValueError:
        assume(False)
    x = torch.randn(n, c0, h, w, dtype=torch.float64)
    return x, conv1, conv2
