"""Tests of convtools.geometry: unfold, mask tensor T, X = B T without T, product kernel."""

import copy

import pytest
import torch
from _reference import loop_unfold, loop_unfold_twice
from _strategies import conv_pairs
from gromo.utils.tools import compute_mask_tensor_t
from hypothesis import given

import convtools as ct

F64 = torch.float64


@given(conv_pairs())
def test_conv_output_size_matches_torch(case):
    x, conv1, conv2 = case
    with torch.no_grad():
        h1 = conv1(x)
        h2 = conv2(h1)
    assert ct.conv_output_size(tuple(x.shape[-2:]), conv1) == tuple(h1.shape[-2:])
    assert ct.conv_output_size(tuple(h1.shape[-2:]), conv2) == tuple(h2.shape[-2:])


@given(conv_pairs())
def test_unfold_input_equals_loops_and_reproduces_conv(case):
    x, conv1, _ = case
    b = ct.unfold_input(x, conv1)
    torch.testing.assert_close(b, loop_unfold(x, conv1))
    weight = conv1.weight.flatten(1)
    if conv1.bias is not None:
        weight = torch.cat([weight, conv1.bias[:, None]], 1)
    with torch.no_grad():
        torch.testing.assert_close(torch.einsum("ca, ial -> icl", weight, b), conv1(x).flatten(2))


@given(conv_pairs())
def test_unfold_twice_equals_einsum_with_t_and_loops(case):
    x, conv1, conv2 = case
    hw1 = ct.conv_output_size(tuple(x.shape[-2:]), conv1)
    t = ct.mask_tensor_t(hw1, conv2, dtype=F64)
    b = ct.unfold_input(x, conv1)
    x_twice = ct.unfold_twice(x, conv1, conv2)
    torch.testing.assert_close(x_twice, torch.einsum("ial, mel -> imae", b, t))
    torch.testing.assert_close(x_twice, loop_unfold_twice(x, conv1, conv2))


@given(conv_pairs(max_size=9))
def test_mask_tensor_t_equals_gromo(case):
    x, conv1, conv2 = case
    hw1 = ct.conv_output_size(tuple(x.shape[-2:]), conv1)
    reference = compute_mask_tensor_t(hw1, copy.deepcopy(conv2).float())
    ours = ct.mask_tensor_t(hw1, conv2)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, reference)


@given(conv_pairs())
def test_product_kernel_reproduces_the_pair(case):
    x, conv1, conv2 = case
    with torch.no_grad():
        y = conv2(conv1(x))
        if conv2.bias is not None:
            y = y - conv2.bias[None, :, None, None]
        theta = ct.product_kernel(conv1, conv2)
        pred = ct.geometry.apply_product_kernel(
            ct.unfold_twice(x, conv1, conv2), theta, y.shape[-2:]
        )
    a = conv1.weight[0].numel() + (conv1.bias is not None)
    assert theta.shape == (a, conv2.kernel_size[0] * conv2.kernel_size[1], conv2.out_channels)
    torch.testing.assert_close(pred, y)


def test_t_would_be_terabytes_on_a_photograph():
    # 427×640 intermediate image, 3×3 conv2 with padding 1: T has (HW)^2 E floats.
    conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
    hw = 427 * 640
    m = ct.conv_output_size((427, 640), conv2)
    size_bytes = m[0] * m[1] * 9 * hw * 4
    assert 2.6e12 < size_bytes < 2.8e12


def test_float32_and_dtype_device_preserved():
    torch.manual_seed(0)
    conv1, conv2 = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Conv2d(3, 2, 3)
    x = torch.randn(2, 2, 6, 6)
    x_twice = ct.unfold_twice(x, conv1, conv2)
    assert x_twice.dtype == torch.float32 and x_twice.device == x.device
    torch.testing.assert_close(x_twice, loop_unfold_twice(x, conv1, conv2))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: ct.unfold_input(torch.zeros(2, 3, 5), torch.nn.Conv2d(3, 2, 3)),
            ValueError,
            r"x must have shape \(n, C, H, W\)",
        ),
        (
            lambda: ct.unfold_input(torch.zeros(1, 4, 5, 5), torch.nn.Conv2d(3, 2, 3)),
            ValueError,
            "x must have 3 channels",
        ),
        (
            lambda: ct.unfold_input(torch.zeros(1, 4, 5, 5), torch.nn.Conv2d(4, 2, 3, groups=2)),
            ValueError,
            "groups=1",
        ),
        (
            lambda: ct.unfold_input(
                torch.zeros(1, 3, 5, 5), torch.nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect")
            ),
            ValueError,
            "padding_mode='zeros'",
        ),
        (
            lambda: ct.unfold_input(
                torch.zeros(1, 3, 5, 5), torch.nn.Conv2d(3, 2, 3, padding="same")
            ),
            ValueError,
            "string padding",
        ),
        (
            lambda: ct.unfold_input(
                torch.full((1, 3, 5, 5), float("nan")), torch.nn.Conv2d(3, 2, 3)
            ),
            ValueError,
            "NaN or infinite",
        ),
        (lambda: ct.unfold_input([[1.0]], torch.nn.Conv2d(3, 2, 3)), TypeError, "torch.Tensor"),
        (
            lambda: ct.unfold_input(
                torch.zeros(1, 3, 5, 5, dtype=torch.int64), torch.nn.Conv2d(3, 2, 3)
            ),
            TypeError,
            "floating-point",
        ),
        (
            lambda: ct.unfold_input(torch.zeros(1, 3, 5, 5), torch.nn.Linear(3, 2)),
            TypeError,
            "conv must be a torch.nn.Conv2d",
        ),
        (lambda: ct.conv_output_size((2, 2), torch.nn.Conv2d(3, 2, 3)), ValueError, "too small"),
        (lambda: ct.conv_output_size((0, 4), torch.nn.Conv2d(3, 2, 1)), ValueError, "positive"),
        (lambda: ct.conv_output_size(4, torch.nn.Conv2d(3, 2, 1)), TypeError, "pair of ints"),
        (
            lambda: ct.unfold_twice(
                torch.zeros(1, 3, 5, 5), torch.nn.Conv2d(3, 2, 3), torch.nn.Conv2d(4, 2, 1)
            ),
            ValueError,
            "conv1.out_channels",
        ),
        (
            lambda: ct.product_kernel(torch.nn.Conv2d(3, 2, 3), torch.nn.Conv2d(3, 2, 3)),
            ValueError,
            "conv1.out_channels",
        ),
        (
            lambda: ct.geometry.apply_product_kernel(
                torch.zeros(1, 4, 3, 2), torch.zeros(3, 3, 2), (2, 2)
            ),
            ValueError,
            "agree on",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
