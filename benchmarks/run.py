#!/usr/bin/env python
"""Entry point of ``make bench``: ``python benchmarks/run.py [--quick] [--help]``.

The benchmark itself is the package ``benchmarks`` (see benchmarks/README.md); this script
only makes it importable when run by path and calls :func:`benchmarks.cli.main`.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run by path, Python puts benchmarks/ first on sys.path, where memory.py or timing.py
# would shadow top-level modules of the same name: import the package from the repository.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from benchmarks.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
