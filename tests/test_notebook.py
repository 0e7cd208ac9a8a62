"""Tests of convtools.notebook: parameter checks, devices, dtypes, seeds, progress bars."""

import doctest
import io
import random
import re
import sys

import numpy as np
import pytest
import torch
import tqdm
from hypothesis import given
from hypothesis import strategies as st

import convtools.notebook as nbk

HAS_CUDA = torch.cuda.is_available()


def test_doctests():
    result = doctest.testmod(nbk, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


# ------------------------------------------------------------------------------ check_int


@pytest.mark.parametrize("value", [1, 5, np.int64(3), np.int32(7)])
def test_check_int_accepts_integers(value):
    out = nbk.check_int("n", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, 2.5, "3", None, [1]])
def test_check_int_refuses_non_integers(value):
    with pytest.raises(TypeError, match=r"^n must be an integer"):
        nbk.check_int("n", value)


@pytest.mark.parametrize(
    ("value", "kwargs", "pattern"),
    [
        (0, {}, r"^size must be an integer >= 1, got 0$"),
        (-3, {}, r"^size must be an integer >= 1, got -3$"),
        (-1, {"minimum": 0}, r">= 0, got -1"),
        (11, {"maximum": 10}, r"in \[1, 10\], got 11"),
        (11, {"minimum": None, "maximum": 10}, r"<= 10, got 11"),
    ],
)
def test_check_int_bounds_name_the_parameter(value, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        nbk.check_int("size", value, **kwargs)


def test_check_int_without_bounds():
    assert nbk.check_int("offset", -10**12, minimum=None) == -10**12


@given(st.integers(min_value=-1000, max_value=1000))
def test_check_int_property(value):
    if value >= 1:
        assert nbk.check_int("k", value) == value
    else:
        with pytest.raises(ValueError, match="^k "):
            nbk.check_int("k", value)


# ------------------------------------------------------------------------------ check_float


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.25), np.float64(2.0), np.int64(3)])
def test_check_float_accepts_reals(value):
    out = nbk.check_float("lr", value)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [True, "0.1", None, 1j, [0.1]])
def test_check_float_refuses_non_reals(value):
    with pytest.raises(TypeError, match=r"^lr must be a real number"):
        nbk.check_float("lr", value)


@pytest.mark.parametrize(
    ("value", "kwargs", "pattern"),
    [
        (float("nan"), {}, r"^lr must be a number, got nan"),
        (float("inf"), {}, r"^lr must be finite"),
        (-0.1, {"minimum": 0}, r"^lr must be >= 0, got -0.1"),
        (0.0, {"minimum": 0, "min_inclusive": False}, r"^lr must be > 0, got 0.0"),
        (2.0, {"maximum": 1}, r"^lr must be <= 1, got 2.0"),
        (1.0, {"maximum": 1, "max_inclusive": False}, r"^lr must be < 1, got 1.0"),
    ],
)
def test_check_float_bounds_name_the_parameter(value, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        nbk.check_float("lr", value, **kwargs)


def test_check_float_inclusive_bounds_and_inf():
    assert nbk.check_float("p", 0, minimum=0, maximum=1) == 0.0
    assert nbk.check_float("p", 1, minimum=0, maximum=1) == 1.0
    assert nbk.check_float("t", float("inf"), minimum=0, allow_inf=True) == float("inf")


# ------------------------------------------------------------------------------ check_bool, choice


def test_check_bool():
    assert nbk.check_bool("plot", True) is True
    assert nbk.check_bool("plot", np.bool_(False)) is False
    for bad in (1, 0, "True", None):
        with pytest.raises(TypeError, match=r"^plot must be True or False"):
            nbk.check_bool("plot", bad)


def test_check_choice():
    assert nbk.check_choice("method", "full", ("tiny", "full", "exact")) == "full"
    with pytest.raises(ValueError, match=r"^method must be one of 'tiny', 'full'; got 'TINY'$"):
        nbk.check_choice("method", "TINY", ["tiny", "full"])
    with pytest.raises(ValueError, match=r"^method must be one of"):
        nbk.check_choice("method", ["tiny"], iter(["tiny"]))  # unhashable value


# ------------------------------------------------------------------------------ lists and pairs


@pytest.mark.parametrize(
    "value", [[1, 2, 4], (1, 2, 4), np.array([1, 2, 4]), "1,2,4", "[1, 2, 4]", " (1, 2, 4) "],
)
def test_check_int_list_accepts_sequences_and_strings(value):
    assert nbk.check_int_list("ks", value) == [1, 2, 4]


def test_check_int_list_range():
    assert nbk.check_int_list("ks", range(1, 4)) == [1, 2, 3]


@pytest.mark.parametrize(
    ("value", "kwargs", "error", "pattern"),
    [
        ([1, 0, 3], {}, ValueError, r"^ks\[1\] must be an integer >= 1, got 0$"),
        ([1, 2.5], {}, TypeError, r"^ks\[1\] must be an integer"),
        ("1,x", {}, TypeError, r"^ks must be a list of integers, got '1,x'"),
        (5, {}, TypeError, r"^ks must be a list of integers"),
        ({1, 2}, {}, TypeError, r"^ks must be a list of integers"),
        (np.ones((2, 2), dtype=int), {}, TypeError, r"^ks must be a 1-D list"),
        ([], {}, ValueError, r"^ks must have at least 1 element"),
        ([1, 2, 3], {"max_length": 2}, ValueError, r"^ks must have at most 2 element"),
        ([1, 2, 2], {"unique": True}, ValueError, r"^ks must not repeat a value"),
        ([1, 3, 2], {"increasing": True}, ValueError, r"^ks must be strictly increasing"),
    ],
)
def test_check_int_list_errors_name_the_parameter(value, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        nbk.check_int_list("ks", value, **kwargs)


def test_check_int_pair():
    assert nbk.check_int_pair("kernel_size", 3) == (3, 3)
    assert nbk.check_int_pair("kernel_size", (3, 2)) == (3, 2)
    assert nbk.check_int_pair("kernel_size", "3,2") == (3, 2)
    with pytest.raises(ValueError, match=r"^kernel_size must be an integer >= 1, got 0"):
        nbk.check_int_pair("kernel_size", 0)
    with pytest.raises(ValueError, match=r"^kernel_size\[1\] must be an integer >= 1"):
        nbk.check_int_pair("kernel_size", (3, -1))
    with pytest.raises(ValueError, match=r"^kernel_size must have at most 2"):
        nbk.check_int_pair("kernel_size", (1, 2, 3))
    with pytest.raises(TypeError, match=r"^kernel_size must be a list of integers"):
        nbk.check_int_pair("kernel_size", 2.0)


# ------------------------------------------------------------------------------ devices, dtypes


@pytest.mark.parametrize("value", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_resolve_device_cpu(value):
    assert nbk.resolve_device(value) == torch.device("cpu")


def test_resolve_device_auto():
    expected = "cuda" if HAS_CUDA else "cpu"
    assert nbk.resolve_device("auto").type == expected


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given when there is no GPU")
@pytest.mark.parametrize("value", ["cuda", "cuda:0", "CUDA:1"])
def test_resolve_device_cuda_without_gpu(value):
    with pytest.raises(ValueError, match=r"^device=.* no CUDA device is available"):
        nbk.resolve_device(value)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_resolve_device_cuda_with_gpu():
    assert nbk.resolve_device("cuda").type == "cuda"
    assert nbk.resolve_device("cuda:0") == torch.device("cuda:0")
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=r"^device=.* only \d+ CUDA device"):
        nbk.resolve_device(f"cuda:{count}")


@pytest.mark.parametrize("value", ["tpu", "gpu", "", "cuda:", "cuda:x", "cuda:-1", "mps"])
def test_resolve_device_unknown(value):
    with pytest.raises(ValueError, match=r"^device must be"):
        nbk.resolve_device(value)


@pytest.mark.parametrize("value", [0, None, 1.5, ["cpu"]])
def test_resolve_device_type_error(value):
    with pytest.raises(TypeError, match=r"^device must be a string"):
        nbk.resolve_device(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("float32", torch.float32), ("float64", torch.float64), (" Float64 ", torch.float64),
     ("torch.float32", torch.float32), (torch.float32, torch.float32),
     (torch.float64, torch.float64)],
)
def test_resolve_dtype(value, expected):
    assert nbk.resolve_dtype(value) is expected


@pytest.mark.parametrize("value", ["float16", "double", "int64", torch.int64, torch.bfloat16])
def test_resolve_dtype_unknown(value):
    with pytest.raises(ValueError, match=r"^dtype must be"):
        nbk.resolve_dtype(value)


@pytest.mark.parametrize("value", [None, 32, np.float32])
def test_resolve_dtype_type_error(value):
    with pytest.raises(TypeError, match=r"^dtype must be"):
        nbk.resolve_dtype(value)


# ------------------------------------------------------------------------------ seeds


def _draw():
    return random.random(), np.random.rand(), torch.rand(()).item()


def test_seed_everything_is_reproducible():
    assert nbk.seed_everything(123) == 123
    first = _draw()
    nbk.seed_everything(np.int64(123))
    assert _draw() == first
    nbk.seed_everything(124)
    assert _draw() != first


def test_seed_everything_bounds():
    nbk.seed_everything(0)
    nbk.seed_everything(2**32 - 1)
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 4294967295\]"):
        nbk.seed_everything(-1)
    with pytest.raises(ValueError, match=r"^seed "):
        nbk.seed_everything(2**32)
    with pytest.raises(TypeError, match=r"^seed must be an integer"):
        nbk.seed_everything(1.0)


# ------------------------------------------------------------------------------ progress


def _final_screen(text):
    """What a terminal (or nbval) shows: for each line, what follows its last \\r."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _run_progress(monkeypatch, **kwargs):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    items = list(nbk.progress(**kwargs))
    monkeypatch.undo()
    return items, buffer.getvalue()


def test_progress_is_a_plain_tqdm(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    bar = nbk.progress(range(3), desc="x")
    assert isinstance(bar, tqdm.tqdm)
    assert type(bar).__module__ == nbk.__name__  # not tqdm.auto / tqdm.notebook
    bar.close()


def test_progress_final_output_is_deterministic(monkeypatch):
    items, text = _run_progress(monkeypatch, iterable=range(7), desc="sweep")
    assert items == list(range(7))
    screen = _final_screen(text)
    assert re.fullmatch(r"sweep: 100%\|#+\| 7/7\n", screen), screen
    assert len(screen.rstrip("\n")) == 60
    assert not re.search(r"\d+(\.\d+)?(s|it/s)\b|\?|\[|<", screen)  # no time, rate, estimate


def test_progress_same_output_fast_or_slow(monkeypatch):
    import time

    class Slow:
        def __len__(self):
            return 4

        def __iter__(self):
            for i in range(4):
                time.sleep(0.3)  # longer than the refresh interval: intermediate states
                yield i

    _, fast = _run_progress(monkeypatch, iterable=range(4), desc="d")
    _, slow = _run_progress(monkeypatch, iterable=Slow(), desc="d")
    assert _final_screen(fast) == _final_screen(slow)
    assert slow.count("\r") > fast.count("\r")  # the slow loop did refresh on the way


def test_progress_without_length(monkeypatch):
    items, text = _run_progress(monkeypatch, iterable=(i for i in range(5)), desc="gen")
    assert items == list(range(5))
    assert _final_screen(text) == "gen: 5 it\n"
    _, text = _run_progress(monkeypatch, iterable=(i for i in range(2)))
    assert _final_screen(text) == "2 it\n"


def test_progress_total_and_manual(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    with nbk.progress(total=3, desc="m") as bar:
        for _ in range(3):
            bar.update()
    monkeypatch.undo()
    assert _final_screen(buffer.getvalue()).startswith("m: 100%|")
    with pytest.raises(ValueError, match=r"^total must be an integer >= 0"):
        nbk.progress(range(2), total=-1)


def test_progress_output_is_the_same_for_nbval(monkeypatch):
    """nbval's own stream processing gives one line, whatever the refreshes on the way.

    Notebook 01 checks the same in a real kernel (``make test`` runs nbval on it); this test
    avoids the cost of starting kernels.
    """
    nbformat = pytest.importorskip("nbformat")
    plugin = pytest.importorskip("nbval.plugin")
    import time

    def nbval_view(text, chunk):
        # The kernel sends the stream in pieces; nbval joins them and processes \r.
        pieces = [text[i:i + chunk] for i in range(0, len(text), chunk)]
        outputs = [nbformat.v4.new_output("stream", name="stdout", text=p) for p in pieces]
        return [o.text for o in plugin.coalesce_streams(outputs)]

    def slow(k):
        for i in range(k):
            time.sleep(0.15)
            yield i

    _, fast = _run_progress(monkeypatch, iterable=range(6), desc="loop")
    _, slowly = _run_progress(monkeypatch, iterable=slow(6), total=6, desc="loop")
    assert fast != slowly  # different refreshes on the way ...
    views = {tuple(nbval_view(text, chunk)) for text in (fast, slowly) for chunk in (7, 64, 10**6)}
    assert len(views) == 1  # ... and the same comparison text for nbval
    (view,) = views
    assert re.fullmatch(r"loop: 100%\|#+\| 6/6\n", view[0]), view


# ------------------------------------------------------------------------------ format_table


def test_format_table_alignment_and_floats():
    text = nbk.format_table(["case", "err", "ok"], [["a", 0.123456, True], ["long name", 2, False]])
    lines = text.split("\n")
    assert lines[0] == "case         err  ok"  # numeric columns are right-aligned
    assert lines[1] == "---------  -----  -----"
    assert lines[2] == "a          0.123  True"
    assert lines[3] == "long name      2  False"


def test_format_table_floatfmt_and_errors():
    assert nbk.format_table(["v"], [[1 / 3]], floatfmt=".2e").split("\n")[2] == "3.33e-01"
    assert nbk.format_table(["a", "b"], []) == "a  b\n-  -"
    with pytest.raises(ValueError, match=r"^row 1 has 1 entries but there are 2 headers"):
        nbk.format_table(["a", "b"], [[1, 2], [3]])
