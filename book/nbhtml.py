"""Render notebooks to HTML pages that show their math without a network.

    python book/nbhtml.py build/notebooks/01_lemma.ipynb [...] [--output-dir DIR]

What `make run` uses after papermill. nbconvert's own HTML loads MathJax and require.js
from a CDN, so that offline every formula stays raw LaTeX. Here the page is rendered with
the template in book/nbconvert/offline/ (nbconvert's "lab" template, with MathJax 2 loaded
from `mathjax/` next to the page and no require.js), and that folder is filled from the
jupyter-server-mathjax wheel. Images are embedded in the page, as nbconvert does by default.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
TEMPLATES = BOOK / "nbconvert"
MATHJAX_DIR = "mathjax"


def copy_mathjax(dest: Path) -> None:
    """Copy MathJax 2 (MathJax.js, its configurations, extensions and web fonts) to dest."""
    import jupyter_server_mathjax

    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    version = getattr(jupyter_server_mathjax, "__version__", "unknown")
    stamp = dest / ".version"
    if stamp.exists() and stamp.read_text() == version and (dest / "MathJax.js").exists():
        return
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(static, dest)
    stamp.write_text(version)


def render(notebook: Path, output_dir: Path | None = None) -> Path:
    """Write NAME.html for notebook (beside it, or in output_dir); return its path."""
    import nbformat
    from nbconvert import HTMLExporter

    out_dir = output_dir or notebook.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out_dir / MATHJAX_DIR)
    exporter = HTMLExporter(
        template_name="offline",
        extra_template_basedirs=[str(TEMPLATES)],
        mathjax_url=f"{MATHJAX_DIR}/MathJax.js",
    )
    nb = nbformat.read(notebook, as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    target = out_dir / f"{notebook.stem}.html"
    target.write_text(body, encoding="utf-8")
    return target


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where to write the pages (default: beside each notebook)",
    )
    args = parser.parse_args()
    for notebook in args.notebooks:
        if not notebook.exists():
            sys.exit(f"nbhtml: {notebook} does not exist")
        render(notebook, args.output_dir)


if __name__ == "__main__":
    main()
