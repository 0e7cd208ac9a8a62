"""Tests of nbkit, the notebooks' kit: declared parameters, run-time set-up, progress, tables."""

import doctest
import io
import random
import re
import subprocess
import sys
from typing import Literal

import numpy as np
import pytest
import torch
from pydantic import Field, model_validator

import nbkit
import nbkit.checks
import nbkit.parameters
import nbkit.runtime
import nbkit.tables

HAS_CUDA = torch.cuda.is_available()


class Params(nbkit.NotebookParameters):
    """A declaration like a notebook's, with one field of each kind."""

    height: int = Field(12, ge=4, le=256, description="image height", json_schema_extra=nbkit.SMALL)
    exact_tol: float = Field(1e-12, gt=0, le=1e-3, description="tolerance")
    bias1: bool = Field(False, description="conv1 has a bias")
    method: Literal["tiny", "full", "exact"] = Field("tiny", description="method")
    k_values: list[int] = Field([1, 2], min_length=1, description="numbers of new channels")

    @model_validator(mode="after")
    def _fits(self):
        if self.height < 2 * len(self.k_values):
            raise nbkit.parameter_error("height", self.height, "too small for k_values")
        return self


GOOD = dict(
    seed=0,
    device="cpu",
    dtype="float64",
    threads=1,
    height=12,
    exact_tol=1e-12,
    bias1=False,
    method="tiny",
    k_values=[1, 2],
)


@pytest.mark.parametrize("module", [nbkit.checks, nbkit.parameters, nbkit.runtime, nbkit.tables])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_convtools_does_not_import_nbkit():
    code = "import sys, convtools; sys.exit('nbkit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------------------ parameters


def test_check_accepts_good_values_and_namespaces():
    assert Params.check(GOOD).height == 12
    namespace = dict(GOOD, __name__="__main__", plt=None, other=3)  # like globals()
    assert Params.check(namespace).k_values == [1, 2]
    # papermill's `-p k_values "[1, 2, 4]"` passes the text of the list
    assert Params.check(dict(GOOD, k_values="[1, 2, 4]")).k_values == [1, 2, 4]


@pytest.mark.parametrize(
    "change, first_line",
    [
        ({"height": -3}, "parameter 'height' = -3: must be >= 4"),
        ({"height": 4.0}, "parameter 'height' = 4.0: must be an integer (int), not float"),
        ({"height": True}, "parameter 'height' = True: must be an integer (int), not bool"),
        ({"exact_tol": 1}, "parameter 'exact_tol' = 1: must be <= 0.001"),
        ({"exact_tol": "1e-9"}, "parameter 'exact_tol' = '1e-9': must be a real number"),
        ({"bias1": 1}, "parameter 'bias1' = 1: must be True or False (bool), not int"),
        ({"method": "als"}, "parameter 'method' = 'als': must be one of 'tiny', 'full' or 'exact'"),
        ({"k_values": [1, 2.5]}, "parameter 'k_values[1]' = 2.5: must be an integer"),
        ({"k_values": []}, "parameter 'k_values' = []: must have at least 1 item"),
        (
            {"device": "gpu"},
            "parameter 'device' = 'gpu': must be 'cpu', 'cuda', 'cuda:N' or 'auto'",
        ),
        ({"dtype": "float16"}, "parameter 'dtype' = 'float16': must be one of"),
        ({"seed": -1}, "parameter 'seed' = -1: must be >= 0"),
        ({"height": 5, "k_values": [1, 2, 3]}, "parameter 'height' = 5: too small for k_values"),
        ({"heigth": 12}, "parameter 'heigth' is unknown (declared: seed, device, dtype, threads,"),
    ],
)
def test_check_errors_name_the_parameter(change, first_line):
    with pytest.raises(ValueError) as info:
        Params.check(dict(GOOD, **change))
    assert str(info.value).split("\n")[0].startswith(first_line), str(info.value)


def test_check_refuses_missing_names_also_in_a_namespace():
    for values in (
        {k: v for k, v in GOOD.items() if k != "height"},
        {"__name__": "__main__", **{k: v for k, v in GOOD.items() if k != "height"}},
    ):
        with pytest.raises(ValueError, match=r"^parameter 'height' is missing"):
            Params.check(values)


def test_sample_draws_valid_reproducible_small_values():
    draws = [Params.sample(np.random.default_rng(s)) for s in range(40)]
    assert draws[:3] == [Params.sample(np.random.default_rng(s)) for s in range(3)]
    for values in draws:
        Params.check(values)
        assert 4 <= values["height"] <= 12  # SMALL: between the minimum and the default
        assert 1e-13 <= values["exact_tol"] <= 1e-11  # within a factor 10 of the default
        assert values["device"] == "cpu" and values["threads"] in (0, 1, 2)
    assert {v["method"] for v in draws} == {"tiny", "full", "exact"}
    assert {v["bias1"] for v in draws} == {True, False}
    assert Params.sample(np.random.default_rng(0), height=7)["height"] == 7


def test_describe_lists_every_field():
    rows = Params.describe()
    assert [r[0] for r in rows] == list(Params.model_fields)
    assert rows[4] == ("height", "int", "12", "image height")


# ------------------------------------------------------------------------------ runtime


@pytest.mark.parametrize("value", ["cpu", " CPU ", torch.device("cpu")])
def test_resolve_device_cpu(value):
    assert nbkit.resolve_device(value) == torch.device("cpu")


@pytest.mark.parametrize("value", ["tpu", "cuda:", "cuda:x", "mps", 0])
def test_resolve_device_unknown_names_device(value):
    with pytest.raises(ValueError, match=r"^parameter 'device' = .*: must be 'cpu', 'cuda'"):
        nbkit.resolve_device(value)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given when there is no GPU")
def test_resolve_device_missing_cuda():
    assert nbkit.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^parameter 'device' = 'cuda:0': no CUDA device"):
        nbkit.resolve_device("cuda:0")


def test_resolve_dtype_and_tolerance():
    assert nbkit.resolve_dtype("float64") is torch.float64
    assert nbkit.resolve_dtype(torch.float32) is torch.float32
    with pytest.raises(ValueError, match=r"^parameter 'dtype' = 'float16'"):
        nbkit.resolve_dtype("float16")
    assert nbkit.tolerance(torch.float64) == 1e-10
    assert nbkit.tolerance(torch.float32, float32=1e-3) == 1e-3


def test_seed_everything_and_configure():
    def draw():
        return random.random(), np.random.rand(), torch.rand(()).item()

    nbkit.seed_everything(123)
    first = draw()
    nbkit.seed_everything(123)
    assert draw() == first
    with pytest.raises(ValueError, match=r"^parameter 'seed' = -1"):
        nbkit.seed_everything(-1)
    threads = torch.get_num_threads()
    try:
        rt = nbkit.configure(Params.check(dict(GOOD, dtype="float32", seed=123)))
        assert (rt.device.type, rt.dtype, rt.tol, rt.threads) == ("cpu", torch.float32, 1e-4, 1)
        assert draw() == first and not torch.backends.cuda.matmul.allow_tf32
        assert rt.describe() == "device cpu, float32, relative tolerance 1e-04"
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ progress


def _final_screen(text):
    """What a terminal (or nbval) shows: for each line, what follows its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _run_progress(monkeypatch, **kwargs):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    items = list(nbkit.progress(**kwargs))
    monkeypatch.undo()
    return items, buffer.getvalue()


def test_progress_final_line_is_plain_and_fixed(monkeypatch):
    items, text = _run_progress(monkeypatch, iterable=range(7), desc="sweep")
    assert items == list(range(7))
    screen = _final_screen(text)
    assert re.fullmatch(r"sweep: 100%\|#+\| 7/7\n", screen), screen
    assert len(screen.rstrip("\n")) == 60
    _, text = _run_progress(monkeypatch, iterable=(i for i in range(5)), desc="gen")
    assert _final_screen(text) == "gen: 5 it\n"
    bar = nbkit.progress(range(1))
    assert type(bar).__mro__[1].__module__ == "tqdm.std"  # not tqdm.auto / tqdm.notebook
    bar.close()


# ------------------------------------------------------------------------------ tables, checks


def test_format_table():
    text = nbkit.format_table(
        ["case", "err", "ok"], [["a", 0.123456, True], ["long name", 2, False]]
    )
    assert text.split("\n") == [
        "case         err  ok",
        "---------  -----  -----",
        "a          0.123  True",
        "long name      2  False",
    ]
    assert nbkit.format_table(["v"], [["1e-3"]]).split("\n")[2] == "1e-3"  # strings kept
    with pytest.raises(ValueError, match=r"^row 1 has 1 entries but there are 2 headers"):
        nbkit.format_table(["a", "b"], [[1, 2], [3]])


def test_checks(capsys):
    a = torch.tensor([1.0, 2.0])
    assert nbkit.rel_err(a, a) == 0.0
    nbkit.check_close("same", a, a, 1e-12)
    nbkit.check("small", 1e-13, 1e-12)
    assert capsys.readouterr().out == "ok  same\nok  small\n"
    with pytest.raises(AssertionError, match=r"^big: 0.5 > 1e-12$"):
        nbkit.check("big", 0.5, 1e-12)
    with pytest.raises(AssertionError, match=r"^nan: nan > 1e-12$"):
        nbkit.check("nan", float("nan"), 1e-12)
    with pytest.raises(AssertionError, match=r"shape \(2,\) != \(1,\)"):
        nbkit.check_close("shape", a, a[:1], 1e-12)
    assert nbkit.verdict("tiny beats full", False) == "tiny beats full: no"
