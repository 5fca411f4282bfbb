"""Writes that a full disk cannot corrupt: a file is written beside its place under a hidden
name and renamed into place only when whole, so a reader never finds half a file; what a failed
write left is removed. `disk_full` tells a full disk (or quota) from other errors. `exclusive`
makes processes of one host that make the same thing (a task's cache, a backbone's weights, a
fresh MLflow store) take turns."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator

FULL = (errno.ENOSPC, errno.EDQUOT)


def write_atomically(path: str | Path, write: Callable[[str], None]) -> None:
    """`write(temporary path)`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(str(partial))
        os.replace(partial, path)
    except Exception as error:       # a writer's own error type for a full disk: say where
        if disk_full(error) and not isinstance(error, OSError):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda partial: Path(partial).write_text(text))


def disk_full(error: BaseException | str) -> bool:
    """An OSError of a full disk or quota, or an error (or a trial's error text) that says so."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in FULL
    return any(os.strerror(code) in str(error) for code in FULL)


def reserve(path: str | Path) -> None:
    """Allocate a file's whole length now: a memory-mapped write into a full disk would kill
    the process (SIGBUS) where this raises OSError(ENOSPC)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """An exclusive lock on the file `path` (made if missing) for the block: another process
    of this host asking for the same one waits until it is released."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
