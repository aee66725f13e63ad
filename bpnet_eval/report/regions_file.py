"""``regions.tsv`` written by two processes at once: formatting its rows (one ``%``-format per row, ~0.2 s per 100k
regions) is the longest part of writing a report.

A process forked when the file is started (``fork``: ``workers.ForkedCall``, given by the command line where fork
is safe) formats and writes the header and the first rows into the file, while this process goes on with the rest
of the report and formats the last rows (its ``share``) into a hidden file beside it, appended when both are done.
The text is what ``tables.regions_tsv`` writes, byte for byte. Without ``fork``, or for few regions, this process
writes the whole file at once.

The file is complete, flushed to disk and the hidden file gone when the ``regions_file`` block ends; on an error
(in either process), Ctrl-C or a kill, the forked process is stopped (killed and reaped) before the error leaves
the block, and the report unit the file lies in (``files.output_unit``) is removed whole.
"""

import os
import shutil
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

from .files import write_file
from .tables import regions_header, regions_rows, regions_tsv

FORK_MIN_ROWS = 20_000  # fewer regions take under ~0.04 s to format: not worth a process
COPY_CHUNK = 1 << 20


def split_row(n_rows: int, share: float) -> int:
    """The first of the last ``share`` (0..1) of ``n_rows`` rows: where this process's rows start."""
    return n_rows - int(round(n_rows * min(max(share, 0.0), 1.0)))


def part_path(path: Path) -> Path:
    """The hidden file beside ``path`` holding this process's rows until they are appended."""
    return path.with_name(f".{path.name}.part")


def append_file(path: Path, part: Path) -> None:
    """Append the bytes of ``part`` to ``path`` and flush ``path`` to disk."""
    with open(path, "ab") as target, open(part, "rb") as source:
        shutil.copyfileobj(source, target, COPY_CHUNK)
        target.flush()
        os.fsync(target.fileno())


@contextmanager
def regions_file(path, regions, columns: dict, groupings=(), share: float = 0.5, fork=None):
    """Write ``regions.tsv`` of ``regions`` and ``columns`` at ``path`` while the block runs: complete and flushed
    to disk when it ends. ``fork(call, what)``: starts ``call()`` in a forked process, an object with ``result()``
    and ``close()`` and a context manager closing it (``workers.ForkedCall``); None: all in this process. This
    process formats its ``share`` of the rows (the last ones; 0: the forked process formats them all) when the
    block's own work is done. Leaving the block by an error stops the forked process."""
    path = Path(path)
    n_rows = len(regions)
    if fork is None or n_rows < FORK_MIN_ROWS:
        write_file(path, regions_tsv(regions, columns, groupings))
        yield
        return
    split = split_row(n_rows, share)
    head = chain([regions_header(regions, columns, groupings)], regions_rows(regions, columns, groupings, 0, split))
    part = part_path(path)
    with fork(lambda: write_file(path, head), f"writing {path.name}") as writer:
        yield
        try:
            if split < n_rows:
                write_file(part, regions_rows(regions, columns, groupings, split, n_rows), durable=False)
            writer.result()
            if split < n_rows:
                append_file(path, part)
        finally:
            if part.exists():
                part.unlink()
