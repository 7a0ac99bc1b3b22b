"""The one error type that means "the user's input is wrong" (exit code 2)."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: a config field, a data file or a data row.

    The message must name the file and the field / row and say how to fix it;
    entry points print it without a traceback and exit with code 2.
    """

    def __init__(self, message: str, *, source: str | None = None):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)
