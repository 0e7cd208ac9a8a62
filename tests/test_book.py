"""The collection read as a book, and `make run`'s HTML, checked in a real browser.

The book is built by book/build.py (what `make book` runs) into build/book/_build/html/;
`make book-test` builds it first and sets BOOK_PREBUILT=1 so that it is not built twice.
The browser checks (book/browser_check.py) open every page in headless Chromium: math
typeset, images loaded, internal links resolved, no console error, no network request.
Screenshots of every page land in build/book/screenshots/ (the book) and
build/book/screenshots-nbconvert/ (make run's HTML pages).

Without a Chromium or Chrome on the PATH the browser tests are skipped with the reason, unless
the environment variable CI is set (GitHub Actions sets CI=true, and so does .ci/run): then
they fail, so that a missing browser can never pass for a green check.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
OUT = ROOT / "build" / "book"
SITE = OUT / "_build" / "html"
SHOTS = OUT / "screenshots"
REQUIRED_KEYS = {
    "verbockhaven2024tiny",
    "evci2022gradmax",
    "wu2020firefly",
    "gromo",
    "kossaifi2019tensorly",
    "golub1973varpro",
    "liu1989lbfgs",
    "ledoit2004shrinkage",
    "recht2010nuclear",
    "alpaydin1998digits",
}


def _load(name):
    """Import book/NAME.py under the name book_NAME (book/ itself is no package)."""
    if str(BOOK) not in sys.path:
        sys.path.append(str(BOOK))  # build.py imports nbhtml
    spec = importlib.util.spec_from_file_location(f"book_{name}", BOOK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = _load("build")
nbhtml = _load("nbhtml")
browser_check = _load("browser_check")


@pytest.fixture(scope="module")
def site():
    """The built book (built here unless `make book` has just done it)."""
    if os.environ.get("BOOK_PREBUILT") != "1" or not (SITE / "intro.html").exists():
        result = subprocess.run(
            [sys.executable, str(BOOK / "build.py")],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, (
            f"book/build.py failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return SITE


@pytest.fixture(scope="module")
def browser():
    """A Chromium or Chrome executable; a skip locally, a failure in CI, when there is none."""
    found = browser_check.find_browser()
    if found is None:
        message = (
            "no Chromium or Chrome on the PATH (Debian: apt-get install chromium; "
            "or set BROWSER_BIN)"
        )
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{message}: CI is set, so the browser tests must run")
        pytest.skip(message)
    return found


def _chapters():
    return [p.stem for p in build.notebook_paths()]


# ---------------------------------------------------------------- how the sources are prepared
PARAMETERS = """\
n: int = 4  # batch size
seed: int = 0  # random seed, and a | bar
device: str = "cpu"  # "cpu" or "cuda"
sizes = [1, 2]
"""


def _notebook(tmp_path, cells):
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "09_demo.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _cell(kind, text, tags=()):
    cell = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {}, "source": text}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def test_parameters_are_read_from_the_parameters_cell():
    found = build.parameters(PARAMETERS)
    assert [p["name"] for p in found] == ["n", "seed", "device", "sizes"]
    assert found[0] == {"name": "n", "type": "int", "default": "4", "comment": "batch size"}
    assert found[2]["default"] == "'cpu'"
    assert found[3]["type"] == "" and found[3]["comment"] == ""
    assert build.parameters("this is not python (") == []


def test_reading_time_counts_markdown_words_only():
    nb = {
        "cells": [
            _cell("markdown", "word " * 399 + "end"),
            _cell("code", "x = 1\n" * 500),
        ]
    }
    assert build.markdown_words(nb) == 400
    assert build.reading_minutes(400) == 2
    assert build.reading_minutes(401) == 3
    assert build.reading_minutes(0) == 1


def test_set_up_cells_are_hidden_and_the_box_goes_under_the_title(tmp_path):
    path = _notebook(
        tmp_path,
        [
            _cell("markdown", "# 09 · A demo\n\nSome text with {cite:p}`gromo`."),
            _cell("code", PARAMETERS, ["parameters"]),
            _cell("code", "import torch"),
            _cell("code", "check(n)", ["setup"]),
            _cell("code", "print(n)"),
        ],
    )
    nb, info = build.prepare(path)
    cells = nb["cells"]
    assert info == {"name": "09_demo", "title": "09 · A demo", "words": 7, "code": 2, "minutes": 1}
    assert "hide-input" in cells[1]["metadata"]["tags"]
    assert "hide-input" in cells[3]["metadata"]["tags"]
    assert "hide-input" not in cells[2].get("metadata", {}).get("tags", [])
    assert "hide-input" not in cells[4].get("metadata", {}).get("tags", [])
    title, box = cells[0]["source"].split("\n", 1)
    assert title == "# 09 · A demo"
    assert "papermill notebooks/09_demo.ipynb out.ipynb --cwd notebooks -p seed 1" in box
    assert "About 1 min of reading" in box and "plus 2 lines of code" in box
    assert "Its 4 parameters" in box
    assert r"random seed, and a \| bar" in box
    assert box.rstrip().endswith("Some text with {cite:p}`gromo`.")
    assert json.loads(path.read_text())["cells"][0]["source"].startswith("# 09 · A demo\n\nSome")


def test_without_setup_tags_the_cell_after_the_parameters_is_hidden(tmp_path):
    path = _notebook(
        tmp_path,
        [
            _cell("markdown", "# Demo"),
            _cell("code", PARAMETERS, ["parameters"]),
            _cell("code", "validate()"),
            _cell("code", "work()"),
        ],
    )
    cells = build.prepare(path)[0]["cells"]
    assert ["hide-input" in c.get("metadata", {}).get("tags", []) for c in cells] == [
        False,
        True,
        True,
        False,
    ]


def test_bibliography_has_the_required_keys_and_every_citation_resolves():
    keys = set(build.BIB_KEY.findall((BOOK / "references.bib").read_text()))
    assert REQUIRED_KEYS <= keys
    cited = []
    for path in build.notebook_paths():
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                cited += [(path.name, k) for k in build.citation_keys(build.source(cell))]
    cited += [("book/intro.md", k) for k in build.citation_keys((BOOK / "intro.md").read_text())]
    assert [c for c in cited if c[1] not in keys] == []
    assert {k for _, k in cited} >= {"verbockhaven2024tiny", "gromo"}


def test_an_unknown_citation_key_stops_the_build(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_x.ipynb").write_text(
        json.dumps(
            {
                "cells": [_cell("markdown", "# X\n\nAs {cite:p}`gromo, nosuchkey2099` show.")],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    monkeypatch.setattr(build, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(build, "ROOT", tmp_path)
    monkeypatch.setattr(build, "SRC", tmp_path / "src")
    monkeypatch.setattr(build, "copy_mathjax", lambda dest: None)
    with pytest.raises(SystemExit, match=r"notebooks/01_x.ipynb: nosuchkey2099"):
        build.prepare_sources()


def test_citation_keys_are_found_in_all_role_forms():
    text = "{cite:p}`a, b` and {cite:t}`c` and {cite}`d` but not {ref}`e`"
    assert build.citation_keys(text) == ["a", "b", "c", "d"]


# ---------------------------------------------------------------- the built site
def test_every_chapter_is_a_page_in_order_with_its_box(site):
    chapters = _chapters()
    assert chapters, "no notebook in notebooks/"
    toc = (OUT / "src" / "_toc.yml").read_text()
    assert re.findall(r"- file: (\S+)", toc) == [*chapters, "bibliography"]
    intro = (site / "intro.html").read_text()
    positions = [intro.find(f'href="{name}.html"') for name in chapters]
    assert -1 not in positions and positions == sorted(positions), "chapters out of order"
    for name in chapters:
        html = (site / f"{name}.html").read_text()
        text = " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())
        assert "min of reading" in text, name
        assert f"papermill notebooks/{name}.ipynb out.ipynb --cwd notebooks -p seed 1" in text
        # The parameters cell, at least, is hidden behind a "show code" toggle.
        assert "tag_hide-input" in html and "tag_parameters tag_hide-input" in html, name
        assert 'class="prev-next-area"' in html, f"{name}: no previous/next links"


def test_bibliography_page_lists_every_reference(site):
    text = unescape(re.sub(r"<[^>]+>", "", (site / "bibliography.html").read_text())).lower()
    for needle in ["growing tiny networks", "gradmax", "firefly", "gromo", "tensorly", "bfgs"]:
        assert needle in text


def test_pages_load_nothing_from_the_network(site):
    external = re.compile(
        r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=\"((?:https?:)?//[^\"]+)\"",
        re.IGNORECASE,
    )
    found = {}
    for page in site.rglob("*.html"):
        hits = external.findall(page.read_text(errors="replace"))
        if hits:
            found[str(page.relative_to(site))] = hits
    assert found == {}


BAD_PAGE = """<!DOCTYPE html>
<html><head><title>bad</title>
<script src="http://example.invalid/lib.js"></script></head>
<body>
<p>A formula left raw: $x^2 + y$ and \\(\\alpha\\).</p>
<img src="missing.png" alt="missing">
<a href="other.html">a broken link</a> <a href="#nowhere">a broken anchor</a>
<script>console.error("something broke");</script>
</body></html>
"""


def test_the_browser_check_sees_what_is_wrong(browser, tmp_path):
    (tmp_path / "bad.html").write_text(BAD_PAGE)
    reports = browser_check.check_site(tmp_path, browser, tmp_path / "shots")
    problems = "\n".join(p for r in reports for p in r.problems)
    for expected in [
        "raw LaTeX in the rendered text",
        "image did not load",
        "console error: something broke",
        "request to the network: http://example.invalid/lib.js",
        "link to a missing file: /other.html",
        "link to a missing anchor: bad.html#nowhere",
    ]:
        assert expected in problems, problems
    assert (tmp_path / "shots" / "bad.png").exists()


def test_book_in_the_browser(site, browser):
    reports = browser_check.check_site(site, browser, SHOTS)
    text = browser_check.summary(reports)
    print(text)
    pages = {r.path for r in reports}
    assert {f"{name}.html" for name in _chapters()} <= pages
    assert not [r for r in reports if r.problems], text
    assert all((SHOTS / f"{name}.png").exists() for name in _chapters())
    assert sum(r.formulas for r in reports) > 0 and sum(r.images for r in reports) > 0


def test_make_run_html_in_the_browser(browser):
    """`make run` renders with book/nbhtml.py: its pages must typeset math offline too."""
    out = OUT / "nbconvert"
    pages = [nbhtml.render(path, out) for path in build.notebook_paths()]
    assert (out / "mathjax" / "MathJax.js").exists()
    for page in pages:
        html = page.read_text()
        assert "cdnjs" not in html and "require.min.js" not in html, page.name
    reports = browser_check.check_site(out, browser, OUT / "screenshots-nbconvert", pages=pages)
    text = browser_check.summary(reports)
    print(text)
    assert not [r for r in reports if r.problems], text
    assert sum(r.formulas for r in reports) > 0
