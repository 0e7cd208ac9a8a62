"""The code stays easy to read and to change: small modules, small functions, a lean package.

Limits from the project's conventions: no module of convtools, nbkit or benchmarks over 450
lines, no function over 90 lines of code (docstring, comments and blank lines not counted),
at most 20 public names at the top of convtools, and `import convtools` loads nothing but
torch and the package itself.
"""

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("convtools", "nbkit", "benchmarks")
MODULES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 90


def code_lines(source: str, node: ast.AST) -> int:
    """Lines of a function holding code: not blank, not only a comment, not the docstring."""
    lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
    skip = set()
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    comment_only = set()
    for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
        if (
            token.type == tokenize.COMMENT
            and not lines[token.start[0] - 1][: token.start[1]].strip()
        ):
            comment_only.add(token.start[0] + node.lineno - 1)
    count = 0
    for number, line in enumerate(lines, start=node.lineno):
        if line.strip() and number not in skip and number not in comment_only:
            count += 1
    return count


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_are_small(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{path.name} is over the limit"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = code_lines(source, node)
            assert size <= MAX_FUNCTION_LINES, f"{path.name}:{node.name} has {size} lines"


def test_top_level_names_are_few_and_include_the_documented_api():
    import convtools

    assert len(convtools.__all__) <= 20
    documented = {
        "conv_output_size",
        "unfold_input",
        "mask_tensor_t",
        "unfold_twice",
        "statistics",
        "optimal_added_parameters",
        "grow",
    }
    assert documented <= set(convtools.__all__)
    for name in convtools.__all__:
        assert hasattr(convtools, name)


def test_import_convtools_loads_only_torch_and_itself():
    # torch's own import already loads tqdm (torch.hub uses it when it is installed), so
    # the check is what convtools adds on top of torch.
    script = (
        "import sys; import torch; before = set(sys.modules); import convtools; "
        "print(sorted(m for m in set(sys.modules) - before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    added = ast.literal_eval(out.strip())
    foreign = [m for m in added if m.split(".")[0] != "convtools"]
    assert not foreign, f"import convtools also imports {foreign}"
