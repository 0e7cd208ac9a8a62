"""Explicit-loop references, slow and obvious, for small sizes only."""

from __future__ import annotations

import torch


def conv_geometry(conv: torch.nn.Conv2d):
    return conv.kernel_size, conv.stride, conv.padding, conv.dilation


def loop_unfold(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """B[i, (c, p, q) (+ ones), (oh, ow)] by loops: the input patch read by each output."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv_geometry(conv)
    n, c_in, h, w = x.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    bias = conv.bias is not None
    out = torch.zeros(n, c_in * kh * kw + bias, ho * wo, dtype=x.dtype)
    for oh in range(ho):
        for ow in range(wo):
            col = oh * wo + ow
            for c in range(c_in):
                for p in range(kh):
                    for q in range(kw):
                        r, s = oh * sh - ph + p * dh, ow * sw - pw + q * dw
                        if 0 <= r < h and 0 <= s < w:
                            out[:, (c * kh + p) * kw + q, col] = x[:, c, r, s]
            if bias:
                out[:, -1, col] = 1.0
    return out


def loop_unfold_twice(
    x: torch.Tensor, conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d
) -> torch.Tensor:
    """X[i, m, a, e] by loops: B at the intermediate position that conv2 reads, or 0."""
    b = loop_unfold(x, conv1)
    (k1h, k1w), (s1h, s1w), (p1h, p1w), (d1h, d1w) = conv_geometry(conv1)
    h1 = (x.shape[2] + 2 * p1h - d1h * (k1h - 1) - 1) // s1h + 1
    w1 = (x.shape[3] + 2 * p1w - d1w * (k1w - 1) - 1) // s1w + 1
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv_geometry(conv2)
    h2 = (h1 + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w2 = (w1 + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = torch.zeros(x.shape[0], h2 * w2, b.shape[1], kh * kw, dtype=x.dtype)
    for oh in range(h2):
        for ow in range(w2):
            for p in range(kh):
                for q in range(kw):
                    r, s = oh * sh - ph + p * dh, ow * sw - pw + q * dw
                    if 0 <= r < h1 and 0 <= s < w1:
                        out[:, oh * w2 + ow, :, p * kw + q] = b[:, :, r * w1 + s]
    return out


def loop_statistics(x_twice: torch.Tensor, v_goal: torch.Tensor):
    """S_tiny, N_tiny, S_full, N_full by explicit sums over samples and positions."""
    n, m_count, a, e = x_twice.shape
    c = v_goal.shape[1]
    v = v_goal.flatten(2)
    s_tiny = torch.zeros(a, a, dtype=x_twice.dtype)
    n_tiny = torch.zeros(a, c * e, dtype=x_twice.dtype)
    s_full = torch.zeros(a * e, a * e, dtype=x_twice.dtype)
    n_full = torch.zeros(a * e, c, dtype=x_twice.dtype)
    for i in range(n):
        for m in range(m_count):
            row = x_twice[i, m].reshape(-1)  # column a * E + e of X_F
            s_full += torch.outer(row, row)
            n_full += torch.outer(row, v[i, :, m])
            for j in range(e):
                s_tiny += torch.outer(x_twice[i, m, :, j], x_twice[i, m, :, j])
                for cc in range(c):
                    n_tiny[:, cc * e + j] += x_twice[i, m, :, j] * v[i, cc, m]
    return s_tiny, n_tiny, s_full, n_full


def planted_pair(k_true=3, seed=0, n=16, c0=3, c1=6, c2=4, hw=8, bias=True):
    """x, an existing pair conv1 -> conv2, and v = conv2'(conv1'(x)) with k_true channels."""
    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(c0, c1, 3, padding=1, bias=bias, dtype=torch.float64)
    conv2 = torch.nn.Conv2d(c1, c2, 3, padding=1, bias=False, dtype=torch.float64)
    teacher1 = torch.nn.Conv2d(c0, k_true, 3, padding=1, bias=bias, dtype=torch.float64)
    teacher2 = torch.nn.Conv2d(k_true, c2, 3, padding=1, bias=False, dtype=torch.float64)
    x = torch.randn(n, c0, hw, hw, dtype=torch.float64)
    with torch.no_grad():
        v = teacher2(teacher1(x))
    return x, conv1, conv2, v
