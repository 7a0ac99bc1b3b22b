"""Shared plumbing for the `python -m orchestrator.<command>` entry points."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from orchestrator.errors import InputError

EXIT_OK, EXIT_ERROR, EXIT_INPUT = 0, 1, 2


def main_guard(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run an entry point; map bad input to exit 2 (message only), other errors to 1."""
    try:
        return main(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - last resort: keep the traceback for bug reports
        traceback.print_exc()
        return EXIT_ERROR


def parse_override(text: str) -> tuple[str, str]:
    """Split a `--set key.path=value` override; the value stays YAML text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
    return key.strip(), value
