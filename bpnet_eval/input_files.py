"""Input files, before and while they are read: every path is checked to be a regular file before anything
opens it (a named pipe would block the run for ever; a directory, socket or device would fail late and
obscurely), and an unexpected error raised while an input is read becomes an ``InputError`` naming the file.

Used by every reader (``regions``, ``sources``); nothing here reads a file's content.
"""

import gzip
import io
import os
import stat
import struct
import zlib
from contextlib import contextmanager
from typing import Optional, Sequence, Union

from .errors import BpnetEvalError, InputError

# What a reader may raise on a file it cannot make sense of (besides its own InputErrors). MemoryError is
# left out on purpose: it is the machine's problem (exit 1), not the file's.
UNEXPECTED_READ_ERRORS = (ValueError, TypeError, OverflowError, ArithmeticError, OSError, EOFError, LookupError,
                          RuntimeError, struct.error, zlib.error)

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(path, mode: int, what: str) -> Optional[InputError]:
    """The error for a ``path`` whose ``st_mode`` is not a regular file's, else None."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return InputError(f"{path}: is {kind}, not a regular file, and is never read (it could block or fail "
                      f"part-way); give the {what} itself")


def require_regular_file(path, what: str) -> None:
    """Raise an InputError unless ``path`` is an existing regular file this process may read.

    ``what`` names the input for the fix (``"HDF5 file"``, ``"region file"``). Nothing is opened: a named
    pipe is refused before anything could block on it.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the {what} ({err.strerror or type(err).__name__}); check the path "
                         "and its permissions") from None
    error = not_regular(path, info.st_mode, what)
    if error is not None:
        raise error
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read the {what} (no read permission); give read permission "
                         "(chmod +r) or a readable copy")


def open_regular_fd(path, what: str) -> int:
    """A read-only descriptor of ``path``, which must be a regular file.

    Checked with ``stat`` before opening (a device is never opened), opened without blocking (a path
    replaced by a named pipe in between does not block) and checked again on the open descriptor.
    ``OSError`` (no such file, no permission) is left to the caller; a path that is not a regular file
    raises an InputError.
    """
    error = not_regular(path, os.stat(path).st_mode, what)
    if error is not None:
        raise error
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))
    try:
        error = not_regular(path, os.fstat(fd).st_mode, what)
        if error is not None:
            raise error
    except BaseException:
        os.close(fd)
        raise
    return fd


GZIP_MAGIC = b"\x1f\x8b"


def read_runs(read, offsets: Sequence[int], sizes: Sequence[int], limit: int) -> list:
    """The stored pieces ``(offsets[k], sizes[k])``, in the order given, as memoryviews: pieces stored one after
    another (in that order) are read by one ``read(offset, size)`` (which returns all ``size`` bytes or raises), up
    to ``limit`` bytes a read; one call, and one system call, for a run of many small pieces."""
    pieces, start = [], 0
    while start < len(offsets):
        first = offsets[start]
        stop, end = start + 1, first + sizes[start]
        while stop < len(offsets) and offsets[stop] == end and end + sizes[stop] - first <= limit:
            end += sizes[stop]
            stop += 1
        span = memoryview(read(first, end - first))
        pieces.extend(span[offsets[k] - first:offsets[k] - first + sizes[k]] for k in range(start, stop))
        start = stop
    return pieces


def open_text(path, what: str):
    """``open(path, "rt")`` of a regular file (``open_regular_fd``), decompressed when it is gzip or bgzip
    (recognised by its first two bytes, whatever its name); OSError is left to the caller."""
    fd = open_regular_fd(path, what)
    try:
        compressed = os.pread(fd, 2, 0) == GZIP_MAGIC
    except BaseException:
        os.close(fd)
        raise
    if not compressed:
        return os.fdopen(fd, "rt")
    with os.fdopen(fd, "rb") as raw:  # region files are small: decompressed whole (bgzip blocks too)
        return io.StringIO(gzip.decompress(raw.read()).decode())


def error_reason(err: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line messages."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


@contextmanager
def reading(paths: Union[str, Sequence[str], None], what: str, fix: str):
    """Run the block; an unexpected error it raises (``UNEXPECTED_READ_ERRORS``) becomes the InputError
    ``"<paths>: cannot read <what> (<reason>); <fix>"``. The tool's own errors pass unchanged; so does
    everything when ``paths`` names no file (in-memory arrays)."""
    try:
        yield
    except BpnetEvalError:
        raise
    except UNEXPECTED_READ_ERRORS as err:
        names = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or [])
        names = [str(name) for name in names if str(name) and str(name) != "<array>"]
        if not names:
            raise
        raise InputError(f"{','.join(names)}: cannot read {what} ({error_reason(err)}); {fix}") from err
