"""Tests of convtools._checks: clear errors at the boundary, and checks run only there."""

import sys

import pytest
import torch
from _reference import planted_pair

import convtools as ct

F64 = torch.float64


@pytest.mark.parametrize(
    "shape", [(0, 3, 5, 5), (2, 3, 0, 5), (2, 3, 5, 0)], ids=["empty batch", "height 0", "width 0"]
)
@pytest.mark.parametrize(
    "call",
    [
        lambda x, c1, c2: ct.unfold_twice(x, c1, c2),
        lambda x, c1, c2: ct.unfold_input(x, c1),
        lambda x, c1, c2: ct.statistics(x, c1, c2, torch.zeros(x.shape[0], 4, 5, 5, dtype=F64)),
        lambda x, c1, c2: ct.grow(x, c1, c2, torch.zeros(x.shape[0], 4, 5, 5, dtype=F64), 1),
    ],
    ids=["unfold_twice", "unfold_input", "statistics", "grow"],
)
def test_zero_sized_inputs_are_a_clear_value_error(shape, call):
    _, conv1, conv2, _ = planted_pair(k_true=1, n=1, hw=5)
    with pytest.raises(ValueError, match="x is empty .* every dimension must be at least 1"):
        call(torch.zeros(shape, dtype=F64), conv1, conv2)


def test_zero_sized_matrices_are_a_clear_value_error():
    with pytest.raises(ValueError, match="s is empty"):
        ct.solve_psd(torch.zeros(0, 0, dtype=F64), torch.zeros(0, dtype=F64))


def _count_check_calls(function):
    """Run ``function`` and count the calls of each function of convtools/_checks.py."""
    counts = {}

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.endswith("convtools/_checks.py"):
            counts[frame.f_code.co_name] = counts.get(frame.f_code.co_name, 0) + 1

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return counts


@pytest.mark.parametrize("method", ["tiny", "full", "exact"])
def test_grow_checks_its_arguments_once(method):
    x, conv1, conv2, v = planted_pair(k_true=2, n=3, hw=5)
    counts = _count_check_calls(lambda: ct.grow(x, conv1, conv2, v, 2, method=method, max_iter=3))
    assert counts["check_image"] == 2  # x and v_goal, nothing inside
    assert counts["check_conv_pair"] == 1
    assert counts["check_finite"] == 2
    assert "check_matrix" not in counts  # the solvers' inputs are not re-checked


def test_grow_through_an_activation_checks_once():
    x, conv1, conv2, v = planted_pair(k_true=2, n=3, hw=5)
    counts = _count_check_calls(
        lambda: ct.grow(x, conv1, conv2, v, 2, activation=torch.relu, activation_iter=2)
    )
    assert counts["check_image"] == 2 and counts["check_conv_pair"] == 1
