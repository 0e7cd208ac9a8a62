"""Tests of convtools.statistics: S and N in both formulations, the accumulator."""

import pytest
import torch
from _reference import loop_statistics, loop_unfold_twice
from _strategies import conv_pairs
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule
from hypothesis import given

import convtools as ct

F64 = torch.float64


def _goal(x, conv1, conv2, seed=1):
    with torch.no_grad():
        y = conv2(conv1(x))
    return torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(seed))


@given(conv_pairs(max_kernel=4, max_size=9))
def test_statistics_equal_explicit_sums(case):
    x, conv1, conv2 = case
    v = _goal(x, conv1, conv2)
    s_tiny, n_tiny, s_full, n_full = loop_statistics(loop_unfold_twice(x, conv1, conv2), v)
    for chunk in (1, 200, ct.stats.CHUNK_ELEMENTS):  # one row at a time ... the whole batch
        s, n = ct.statistics(x, conv1, conv2, v, kind="tiny", chunk_elements=chunk)
        torch.testing.assert_close(s, s_tiny)
        torch.testing.assert_close(n, n_tiny)
    for chunk in (1, 200, ct.stats.CHUNK_ELEMENTS):
        s, n = ct.statistics(x, conv1, conv2, v, kind="full", chunk_elements=chunk)
        torch.testing.assert_close(s, s_full)
        torch.testing.assert_close(n, n_full)


@given(conv_pairs())
def test_full_quadratic_form_is_the_squared_output(case):
    x, conv1, conv2 = case
    v = _goal(x, conv1, conv2)
    s_full, n_full = ct.statistics(x, conv1, conv2, v, kind="full")
    theta = ct.product_kernel(conv1, conv2).detach().reshape(-1, conv2.out_channels)
    with torch.no_grad():
        y = conv2(conv1(x))
        if conv2.bias is not None:
            y = y - conv2.bias[None, :, None, None]
    torch.testing.assert_close((theta * (s_full @ theta)).sum(), y.square().sum())
    # and the whole objective is the squared residual
    torch.testing.assert_close(
        ct.objective(theta, s_full, n_full, v.square().sum()), (y - v).square().sum()
    )


@given(conv_pairs())
def test_tiny_and_full_hold_the_same_n_and_diagonal_blocks(case):
    x, conv1, conv2 = case
    v = _goal(x, conv1, conv2)
    e = ct.geometry.kernel_positions(conv2)
    s_tiny, n_tiny = ct.statistics(x, conv1, conv2, v, kind="tiny")
    s_full, n_full = ct.statistics(x, conv1, conv2, v, kind="full")
    torch.testing.assert_close(ct.layouts.n_full_to_tiny(n_full, e), n_tiny)
    torch.testing.assert_close(ct.layouts.n_tiny_to_full(n_tiny, e), n_full)
    torch.testing.assert_close(ct.layouts.s_tiny_from_full(s_full, e), s_tiny)


def _pair(k2, padding2, seed=0):
    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(3, 4, 3, padding=1, dtype=F64)
    conv2 = torch.nn.Conv2d(4, 2, k2, padding=padding2, dtype=F64)
    x = torch.randn(3, 3, 8, 8, dtype=F64)
    return x, conv1, conv2


def test_tiny_objective_is_exact_only_for_1x1():
    for k2, padding2, exact in [(1, 0, True), (3, 1, False)]:
        x, conv1, conv2 = _pair(k2, padding2)
        v = _goal(x, conv1, conv2)
        e = ct.geometry.kernel_positions(conv2)
        s_tiny, n_tiny = ct.statistics(x, conv1, conv2, v, kind="tiny")
        s_full, n_full = ct.statistics(x, conv1, conv2, v, kind="full")
        theta = torch.randn(s_tiny.shape[0], e, conv2.out_channels, dtype=F64)
        true = ct.objective(theta, s_full, n_full, v.square().sum())
        surrogate = ct.layouts.tiny_objective(
            ct.layouts.theta_to_tiny(theta), s_tiny, n_tiny, v.square().sum()
        )
        if exact:
            torch.testing.assert_close(surrogate, true)
        else:
            assert abs(float(surrogate - true)) > 0.1 * abs(float(true))


def test_read_counts_sum_the_mask():
    conv2 = torch.nn.Conv2d(1, 1, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    t = ct.mask_tensor_t((7, 6), conv2, dtype=F64)
    torch.testing.assert_close(ct.stats.read_counts((7, 6), conv2, dtype=F64), t.sum((0, 1)))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_tiny_statistics_equal_gromo_full_conv2d_growing_module(bias, stride):
    torch.manual_seed(0)
    first = FullConv2dGrowingModule(3, 4, 3, padding=1, use_bias=bias, input_size=(9, 8))
    second = FullConv2dGrowingModule(
        4,
        5,
        (3, 2),
        stride=stride,
        padding=1,
        use_bias=False,
        previous_module=first,
        input_size=(9, 8),
    )
    first.next_module = second
    first.store_input = second.store_input = True
    x = torch.randn(4, 3, 9, 8)
    y = second(first(x))
    v = torch.randn_like(y)
    s_gromo, _ = second.compute_s_growth_update()
    n_gromo, _ = second.compute_m_prev_update(desired_activation=v)
    s, n = ct.statistics(x, first.layer, second.layer, v.detach(), kind="tiny")
    torch.testing.assert_close(s, s_gromo, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(n, n_gromo, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ct.stats.KINDS)
def test_accumulator_over_batches_equals_one_batch(kind):
    x, conv1, conv2 = _pair(3, 1)
    v = _goal(x, conv1, conv2)
    acc = ct.StatisticsAccumulator(conv1, conv2, kind=kind)
    acc.update_from([(x[:1], v[:1]), (x[1:], v[1:])])
    s, n = ct.statistics(x, conv1, conv2, v, kind=kind)
    torch.testing.assert_close(acc.S, s)
    torch.testing.assert_close(acc.N, n)
    torch.testing.assert_close(acc.v_sq_norm, v.square().sum())
    assert acc.n_samples == 3
    assert acc.synchronize() is acc  # no process group: nothing to do


def test_float32_results_keep_dtype():
    x, conv1, conv2 = _pair(3, 1)
    conv1, conv2, x = conv1.float(), conv2.float(), x.float()
    v = _goal(x, conv1, conv2)
    for kind in ct.stats.KINDS:
        s, n = ct.statistics(x, conv1, conv2, v, kind=kind)
        assert s.dtype == n.dtype == torch.float32


def test_bad_inputs_raise_clear_errors():
    x, conv1, conv2 = _pair(3, 1)
    v = _goal(x, conv1, conv2)
    with pytest.raises(ValueError, match="kind must be one of"):
        ct.statistics(x, conv1, conv2, v, kind="fast")
    with pytest.raises(ValueError, match=r"v_goal must have the shape of conv2\(conv1\(x\)\)"):
        ct.statistics(x, conv1, conv2, v[:, :1], kind="tiny")
    with pytest.raises(ValueError, match="NaN or infinite"):
        ct.statistics(x, conv1, conv2, v * float("inf"), kind="tiny")
    with pytest.raises(TypeError, match="dtype and device of x"):
        ct.statistics(x, conv1, conv2, v.float(), kind="tiny")
    with pytest.raises(ValueError, match="conv1.out_channels"):
        ct.StatisticsAccumulator(conv1, torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="not a multiple of E"):
        ct.layouts.n_full_to_tiny(torch.zeros(10, 2), 9)
    with pytest.raises(ValueError, match="theta must have shape"):
        ct.layouts.theta_to_tiny(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="s_full must have shape"):
        ct.objective(torch.zeros(4, 2), torch.zeros(3, 3), torch.zeros(4, 2))
