"""Every notebook runs with random valid parameters drawn from its own declaration.

Each notebook declares its parameters twice over: plain annotated assignments in the cell
tagged ``parameters`` (what papermill overrides) and a subclass of
``nbkit.NotebookParameters`` in the cell tagged ``setup`` (types, bounds, choices). This test
checks that the two name the same parameters, then draws a few valid sets from the
declaration (seeded; sizes between their minimum and the notebook's default, see
``nbkit.parameters``) and runs the notebook with each through papermill, on the CPU.
"""

import ast
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest

import nbkit

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SETS_PER_NOTEBOOK = int(os.environ.get("NBKIT_PARAMETER_SETS", "1"))


def tagged_cell(nb, tag):
    """Source of the first code cell carrying ``tag``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and tag in cell.metadata.get("tags", []):
            return cell.source
    raise AssertionError(f"no code cell tagged {tag!r}")


def parameters_cell(nb):
    """The parameters cell's names and default values, in order."""
    defaults = {}
    for node in ast.parse(tagged_cell(nb, "parameters")).body:
        if isinstance(node, ast.AnnAssign):
            defaults[node.target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.Assign):
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def declaration(nb):
    """The notebook's NotebookParameters subclass, from its setup cell.

    Only the imports and the class definitions of the setup cell are run (IPython magics and
    everything else are left out).
    """
    lines = [
        line
        for line in tagged_cell(nb, "setup").splitlines()
        if not line.lstrip().startswith(("%", "!"))
    ]
    tree = ast.parse("\n".join(lines))
    keep = [
        node
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef))
        or (isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript))
    ]
    namespace = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "<setup>", "exec"), namespace)
    models = [
        v
        for v in namespace.values()
        if isinstance(v, type)
        and issubclass(v, nbkit.NotebookParameters)
        and v is not nbkit.NotebookParameters
    ]
    assert len(models) == 1, f"expected one NotebookParameters subclass, found {models}"
    return models[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_declaration_matches_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    defaults = parameters_cell(nb)
    model = declaration(nb)
    assert list(defaults) == list(model.model_fields) or set(defaults) == set(model.model_fields), (
        sorted(set(defaults) ^ set(model.model_fields))
    )
    model.check(defaults)  # the defaults themselves are valid


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_random_parameters(path, tmp_path):
    papermill = pytest.importorskip("papermill")
    nb = nbformat.read(path, as_version=4)
    defaults = parameters_cell(nb)
    model = declaration(nb)
    rng = np.random.default_rng(sum(map(ord, path.stem)))  # seeded per notebook
    for draw in range(SETS_PER_NOTEBOOK):
        values = model.sample(rng, defaults=defaults, device="cpu")
        try:
            papermill.execute_notebook(
                str(path),
                str(tmp_path / f"{path.stem}_{draw}.ipynb"),
                parameters=values,
                cwd=str(path.parent),
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
            )
        except Exception as err:  # papermill's error names the cell; add the values
            raise AssertionError(f"{path.name} failed with {values}:\n{err}") from None
