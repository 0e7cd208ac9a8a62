"""Small problems shared by the tests of convtools.activation and convtools.signs."""

import torch

from convtools import activation as act


def _problem(
    seed=0,
    c0=2,
    c1=3,
    c2=4,
    size=7,
    n=16,
    kernel2=3,
    stride2=1,
    padding2=1,
    bias=True,
    dtype=torch.float64,
):
    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(c0, c1, 3, padding=1, bias=bias).to(dtype)
    conv2 = torch.nn.Conv2d(c1, c2, kernel2, stride=stride2, padding=padding2).to(dtype)
    x = torch.randn(n, c0, size, size, dtype=dtype)
    with torch.no_grad():
        v = torch.randn_like(conv2(conv1(x)))
    return x, conv1, conv2, v


def _objective(x, conv1, conv2, v, alpha, omega, activation):
    d = act.contribution(x, conv1, conv2, alpha, omega, activation)
    return float((v - d).square().sum())


GEOMETRIES = [
    {},
    {"bias": False},
    {"kernel2": 1, "padding2": 0},
    {"stride2": 2, "padding2": 0, "size": 8},
    {"kernel2": 2, "padding2": 1, "c0": 1},
]
