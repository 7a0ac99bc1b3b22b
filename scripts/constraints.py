"""Print the pinned versions of everything `pip install -e ".[dev,aws]"` installs, as this environment has them.

    python scripts/constraints.py > constraints.txt

Run it after the suite passed (the file records the set it passed with), then commit the file. The README's
two commands install with `-c constraints.txt`, so a fresh clone gets that set, not whatever was released
since. To upgrade (e.g. MLflow): `pip install -e ".[dev,aws]" -U mlflow` without the file, run the suite,
then refresh the file with this command.
"""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata

from packaging.requirements import Requirement


def closure(root: str, extras: set[str]) -> dict[str, str]:
    """Canonical name -> installed version of `root`'s dependencies (with `extras`), transitively."""
    pins: dict[str, str] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    todo = [(root, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in visited:
            continue
        visited.add((name, wanted))
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                continue
            try:
                pins[req.name.lower().replace("_", "-")] = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency not installed here
            todo.append((req.name.lower().replace("_", "-"), frozenset(req.extras)))
    pins.pop(root, None)
    return pins


def main() -> None:
    pins = closure("orchestrator", {"dev", "aws"})
    print(f"# The versions the suite last passed with ({time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, "
          f"{sys.platform}). Refresh: python scripts/constraints.py > constraints.txt (see that script).")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()
