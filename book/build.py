"""Build the notebook collection as a static web site (Jupyter Book 1: Sphinx, MyST-NB).

    python book/build.py            # the site, in build/book/_build/html/
    python book/build.py --quiet    # the same, printing only Sphinx's warnings (`make book`)
    python book/build.py --prepare  # only write the sources into build/book/src/

The committed notebooks are never modified and never executed. Each one is copied into
build/book/src/, and the copy is prepared for reading:

* the first code cell (the papermill `parameters` cell) and every code cell tagged `setup`
  get the tag `hide-input`: the reader sees a "show code" toggle instead of the code, and
  the outputs stay visible. A notebook without any `setup` cell follows the collection's
  convention (README, "Adding a notebook"): its code cell right after the parameters is
  its set-up and validation cell, and is hidden as well;
* a box under the chapter's title gives its reading time and the papermill command that
  re-runs it, with the parameters it accepts.

Reading time: the words of the markdown cells at 200 words a minute, rounded up. Code is
counted apart, as its number of non-blank lines in the cells the reader sees (the hidden
ones left out), and outputs and figures not at all: how long a reader spends on them varies
too much for a rate to mean anything.

The table of contents is generated from `sorted(notebooks/*.ipynb)`, so a new chapter
appears in the book without editing anything here.

Strictness: every citation key used in the notebooks or the pages must be in
book/references.bib (checked here first, with the file and key named), and Sphinx runs
with warnings turned into errors (`-W --keep-going`): an unknown key, a broken
cross-reference, a malformed directive or a notebook that does not parse fails the build.
No warning type is silenced today; one that proves harmless would go under
`suppress_warnings` in book/_config.yml, with the reason.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import math
import re
import shutil
import subprocess
import sys
import time
import tokenize
from pathlib import Path

from nbhtml import copy_mathjax  # book/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "build" / "book"
SRC = OUT / "src"
SITE = OUT / "_build" / "html"

WORDS_PER_MINUTE = 200
PAGES = ["intro.md", "bibliography.md", "references.bib"]

CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
BIB_KEY = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
WORD = re.compile(r"\S*\w\S*")  # a token with a letter or digit: not "#", "-", "|"


# ---------------------------------------------------------------- reading the notebooks
def notebook_paths() -> list[Path]:
    """The chapters, in the order of their file names."""
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def source(cell: dict) -> str:
    """The text of a cell (a string or a list of lines in the file)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def tags(cell: dict) -> list[str]:
    """The tags of a cell."""
    return list(cell.get("metadata", {}).get("tags", []))


def chapter_title(nb: dict, fallback: str) -> str:
    """The first level-1 heading of the notebook, or fallback."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def markdown_words(nb: dict) -> int:
    """Words of the markdown cells (math and link targets count as words, code does not)."""
    return sum(len(WORD.findall(source(c))) for c in nb["cells"] if c["cell_type"] == "markdown")


def code_lines(cells: list[dict]) -> int:
    """Non-blank lines of the code cells among cells."""
    return sum(
        1
        for c in cells
        if c["cell_type"] == "code"
        for line in source(c).splitlines()
        if line.strip()
    )


def reading_minutes(words: int) -> int:
    """Minutes to read so many words, rounded up."""
    return max(1, math.ceil(words / WORDS_PER_MINUTE))


def parameters(code: str) -> list[dict]:
    """The parameters a papermill `parameters` cell defines: name, type, default, comment."""
    comments = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
        tree = ast.parse(code)
    except (SyntaxError, tokenize.TokenError):
        return []
    found = []
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, kind = node.target.id, ast.unparse(node.annotation)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name, kind = node.targets[0].id, ""
        else:
            continue
        default = ast.unparse(node.value) if node.value is not None else ""
        found.append(
            {
                "name": name,
                "type": kind,
                "default": default,
                "comment": comments.get(node.end_lineno, ""),
            }
        )
    return found


def citation_keys(text: str) -> list[str]:
    """The keys cited with {cite}, {cite:p}, {cite:t}... roles in markdown text."""
    keys = []
    for match in CITE_ROLE.finditer(text):
        keys += [k.strip() for k in match.group(1).split(",") if k.strip()]
    return keys


# ---------------------------------------------------------------- preparing the copies
def markdown_cell(text: str) -> dict:
    """A new markdown cell."""
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def md_escape(text: str) -> str:
    """Text that can go in a cell of a markdown table."""
    return text.replace("|", "\\|")


def chapter_box(name: str, words: int, code: int, params: list[dict]) -> str:
    """The MyST box shown under a chapter's title: reading time, papermill command, parameters."""
    minutes = reading_minutes(words)
    lines = [
        "`````{admonition} Reading time and re-running this chapter",
        ":class: tip chapter-info",
        f"**About {minutes} min of reading** ({words:,} words of text at {WORDS_PER_MINUTE} "
        f"words a minute), **plus {code:,} lines of code** to read as closely as you like.",
        "",
        "Re-run it from the repository root (papermill is in `.venv/bin`), here with another "
        "random seed:",
        "",
        "```bash",
        f"papermill notebooks/{name}.ipynb out.ipynb --cwd notebooks -p seed 1",
        "```",
    ]
    if params:
        title = f"Its {len(params)} parameters (set each with `-p name value`)"
        lines += [
            "",
            # A colon fence: a backtick fence's first line may not hold backticks.
            f":::{{admonition}} {title}",
            ":class: dropdown",
            "",
            "| parameter | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for p in params:
            lines.append(
                f"| `{p['name']}` | {md_escape(p['type'])} | "
                f"`{md_escape(p['default'])}` | {md_escape(p['comment'])} |"
            )
        lines.append(":::")
    lines.append("`````")
    return "\n".join(lines) + "\n"


def prepare(path: Path) -> tuple[dict, dict]:
    """The notebook ready for the book, and what the landing page says about it."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    name = path.stem
    words = markdown_words(nb)
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    params: list[dict] = []
    hidden = []
    if code_cells:
        first = code_cells[0]
        if "parameters" in tags(first):
            params = parameters(source(first))
        hidden.append(first)
        setup = [c for c in code_cells if "setup" in tags(c)]
        if not setup and len(code_cells) > 1:
            setup = [code_cells[1]]
        hidden += setup
    for cell in hidden:
        cell.setdefault("metadata", {})["tags"] = tags(cell) + ["hide-input"]
    code = code_lines([c for c in code_cells if not any(c is h for h in hidden)])

    title = chapter_title(nb, name)
    box = chapter_box(name, words, code, params)
    # The box goes right under the title (the first "# " line of the first markdown cell).
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        lines = source(cell).splitlines(keepends=True)
        heading = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
        if heading is not None:
            before, after = "".join(lines[: heading + 1]), "".join(lines[heading + 1 :])
            rest = "\n" + after if after.strip() else ""
            cell["source"] = before.rstrip("\n") + "\n\n" + box + rest
            break
    else:
        nb["cells"].insert(0, markdown_cell(f"# {title}\n\n{box}"))
    info = {"name": name, "title": title, "words": words, "code": code}
    return nb, info | {"minutes": reading_minutes(words)}


def chapters_table(infos: list[dict]) -> str:
    """The landing page's table of chapters, with their reading times."""
    lines = ["| chapter | reading time | code |", "|---|---|---|"]
    for info in infos:
        link = f"[{md_escape(info['title'])}]({info['name']})"
        lines.append(f"| {link} | {info['minutes']} min | {info['code']:,} lines |")
    total = sum(i["minutes"] for i in infos)
    return "\n".join(lines) + (
        f"\n\nAbout {total} minutes of reading in all (the text at {WORDS_PER_MINUTE} words a "
        "minute), plus the code.\n"
    )


def toc(infos: list[dict]) -> str:
    """Jupyter Book's _toc.yml: the landing page, the chapters in order, the bibliography."""
    lines = [
        "# Generated by book/build.py from notebooks/*.ipynb: do not edit.",
        "format: jb-book",
        "root: intro",
        "parts:",
        "  - caption: Chapters",
        "    chapters:",
    ]
    lines += [f"      - file: {info['name']}" for info in infos]
    lines += ["  - caption: Reference", "    chapters:", "      - file: bibliography"]
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> None:
    """Keep Sphinx's incremental build: an unchanged file keeps its modification time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def prepare_sources() -> list[dict]:
    """Write the book's sources into build/book/src/; return what is known of each chapter."""
    paths = notebook_paths()
    if not paths:
        sys.exit("book: no notebook in notebooks/")
    SRC.mkdir(parents=True, exist_ok=True)
    bib = (BOOK / "references.bib").read_text(encoding="utf-8")
    known = set(BIB_KEY.findall(bib))

    unknown = []
    infos = []
    for path in paths:
        nb, info = prepare(path)
        infos.append(info)
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                unknown += [
                    (path.relative_to(ROOT), k)
                    for k in citation_keys(source(cell))
                    if k not in known
                ]
        write_if_changed(SRC / path.name, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    for page in PAGES:
        text = (BOOK / page).read_text(encoding="utf-8")
        if page.endswith(".md"):
            unknown += [(Path("book") / page, k) for k in citation_keys(text) if k not in known]
        if page == "intro.md":
            text = text.replace("<!-- chapters -->", chapters_table(infos))
        write_if_changed(SRC / page, text)
    if unknown:
        lines = "\n".join(f"  {where}: {key}" for where, key in unknown)
        sys.exit(f"book: citation keys not in book/references.bib:\n{lines}")

    write_if_changed(SRC / "_config.yml", (BOOK / "_config.yml").read_text(encoding="utf-8"))
    write_if_changed(SRC / "_toc.yml", toc(infos))
    write_if_changed(
        SRC / "_assets" / "book.css", (BOOK / "assets" / "book.css").read_text(encoding="utf-8")
    )
    write_if_changed(
        SRC / "_ext" / "book_fixes.py",
        (BOOK / "_ext" / "book_fixes.py").read_text(encoding="utf-8"),
    )
    copy_mathjax(SRC / "_assets" / "mathjax")

    # Drop what a removed or renamed notebook left behind.
    wanted = {p.name for p in paths} | set(PAGES) | {"_config.yml", "_toc.yml", "_assets", "_ext"}
    for stale in SRC.iterdir():
        if stale.name not in wanted:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return infos


def build(quiet: bool = False) -> None:
    """Run Jupyter Book on build/book/src/, warnings counting as errors."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    if not jupyter_book.exists():
        sys.exit(
            "book: jupyter-book is not installed in this environment "
            "(pip install jupyter-book==1.0.4.post1 jupyter-server-mathjax==0.2.6)"
        )
    cmd = [
        str(jupyter_book),
        "build",
        str(SRC),
        "--path-output",
        str(OUT),
        "--builder",
        "html",
        "-W",
        "--keep-going",
    ]
    if quiet:  # warnings and errors only
        cmd.append("--quiet")
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(
            f"book: the build failed (exit status {result.returncode}); "
            "every warning above counts as an error"
        )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prepare", action="store_true", help="only write the sources into build/book/src/"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="show Sphinx's warnings and errors only"
    )
    args = parser.parse_args()
    start = time.monotonic()
    infos = prepare_sources()
    print(f"book: {len(infos)} chapters prepared in {SRC.relative_to(ROOT)}/")
    if args.prepare:
        return
    build(quiet=args.quiet)
    # Served as is: no Jekyll pass may hide the _static/ and _images/ folders.
    (SITE / ".nojekyll").touch()
    print(
        f"book: site in {SITE.relative_to(ROOT)}/ "
        f"({time.monotonic() - start:.0f} s); open {SITE.relative_to(ROOT)}/index.html"
    )


if __name__ == "__main__":
    main()
