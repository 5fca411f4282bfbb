"""What the command line tells its user: errors, each one line that the CLI prints before exiting
with status 2 (anything else that escapes is a bug and keeps its traceback), and status lines."""
from __future__ import annotations

import sys
from typing import Callable, Iterable


class StudyInputError(Exception):
    """Bad input from the user: an unknown name, a malformed flag, data that is not prepared."""


class UnknownName(StudyInputError, KeyError):
    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        self.kind, self.name = kind, name
        super().__init__(f"unknown {kind} '{name}'; valid: {', '.join(sorted(valid))}")

    def __str__(self) -> str:          # KeyError would quote the message
        return self.args[0]


def say(line: str) -> None:
    """A status line: on stderr, so that stdout holds only what a command prints as its result."""
    print(line, file=sys.stderr, flush=True)


def exit_status(command: Callable[[], None]) -> int:
    """Run a command-line body: bad input becomes one line on stderr and exit status 2."""
    try:
        command()
    except StudyInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
