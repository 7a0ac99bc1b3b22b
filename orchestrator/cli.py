"""Shared plumbing for the `python -m orchestrator.<command>` entry points."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from orchestrator.errors import InputError, OutOfSpace

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_NO_SPACE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def main_guard(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run an entry point; map bad input to exit 2 and a full disk to exit 3 (message only), other errors to 1."""
    from orchestrator.storage import is_disk_full

    try:
        return main(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except OutOfSpace as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NO_SPACE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - last resort: keep the traceback for bug reports
        if is_disk_full(err):  # the image cache, MLflow's store, a file the command writes
            print(f"error: {no_space_text(err)}", file=sys.stderr)
            return EXIT_NO_SPACE
        traceback.print_exc()
        return EXIT_ERROR


def no_space_text(err: BaseException) -> str:
    """A full disk met outside the grid's storage: which file, how much is free there, what to do."""
    from orchestrator.storage import free_bytes

    while err is not None and not getattr(err, "filename", None):
        err = err.__cause__ or err.__context__
    path = getattr(err, "filename", None)
    where = f"writing {path}: {free_bytes(str(path)) / 1e6:.0f} MB free there" if path else str(err).splitlines()[0][:300]
    return (f"no space left on device ({where}). Free space there (or move it: ORCHESTRATOR_CACHE for the image cache, "
            f"tracking.uri for MLflow's store), then run the same command again; a grid continues with --resume")


def parse_override(text: str) -> tuple[str, str]:
    """Split a `--set key.path=value` override; the value stays YAML text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
    return key.strip(), value
