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


class OutOfSpace(Exception):
    """A volume the grid writes to is full (exit code 3): the message names the path, what it holds and needs,
    and that `--resume` continues once there is room. Nothing is lost: finished trials are reused, the others
    continue from their last good checkpoint."""
