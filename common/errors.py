"""What the command line tells its user: errors, each one line that the CLI prints before exiting
with status 2 (anything else that escapes is a bug and keeps its traceback), and status lines.
`exit_status` is the one error path of every command line (`study`, `tasks`, `analysis`)."""
from __future__ import annotations

import sys
from typing import Callable, Iterable

from common.files import disk_full


class StudyInputError(Exception):
    """Bad input from the user: an unknown name, a malformed flag, data that is not prepared."""


class UnknownName(StudyInputError, KeyError):
    def __init__(self, kind: str, name: str, valid: Iterable[str], hint: str = ""):
        self.kind, self.name = kind, name
        super().__init__(f"unknown {kind} '{name}'; valid: {', '.join(sorted(valid))}{hint}")

    def __str__(self) -> str:          # KeyError would quote the message
        return self.args[0]


def say(line: str) -> None:
    """A status line: on stderr, so that stdout holds only what a command prints as its result."""
    print(line, file=sys.stderr, flush=True)


INTERRUPTED = "interrupted: what finished is kept; run the same command again to continue"


def exit_status(command: Callable[[], int | None], interrupted: str = INTERRUPTED) -> int:
    """Run a command-line body and return its exit status (the body's, else 0). Bad input and a
    full disk become one line on stderr and status 2, an interrupt one line and status 130;
    anything else keeps its traceback."""
    try:
        return command() or 0
    except StudyInputError as error:
        print(f"error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as error:                 # a full disk under the cache or the store
        if not disk_full(error):
            raise
        print(f"error: {error}; free space there and run the same command again",
              file=sys.stderr)
    return 2
