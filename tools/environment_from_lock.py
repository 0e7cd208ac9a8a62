"""Rewrite the ``pip:`` section of environment.yml from requirements.lock (``make lock``).

The lock is the single source of the pins; conda users get the same ones. Only the lines
between the ``pip:`` key and the end of the file are replaced; comments and the conda part
above them are kept.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;#]+)")


def pins(lock_text: str) -> list[str]:
    """The ``name==version`` lines of a lock file, in its order."""
    found = []
    for line in lock_text.splitlines():
        match = PIN.match(line.strip())
        if match:
            found.append(match.group(1))
    return found


def rewrite(environment_text: str, pinned: list[str]) -> str:
    """environment.yml's text with its pip section holding exactly ``pinned``."""
    lines = environment_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    indent = " " * (len(lines[start]) - len(lines[start].lstrip()) + 4)
    keep = [line for line in lines[start + 1 :] if line.strip().startswith(("#", "- --"))]
    body = keep + [f"{indent}- {pin}" for pin in pinned]
    return "\n".join(lines[: start + 1] + body) + "\n"


def main(lock: str = "requirements.lock", environment: str = "environment.yml") -> None:
    """Rewrite ``environment`` from ``lock``."""
    env_path = Path(environment)
    new = rewrite(env_path.read_text(), pins(Path(lock).read_text()))
    env_path.write_text(new)


if __name__ == "__main__":
    main(*sys.argv[1:])
