"""The windows of a bigWig read block by block, read once in genome order into an unnamed temporary file.

A file too big to keep, even where the run's windows lie, is read block by block; where the windows come in no
genome order (peaks sorted by score, shuffled regions), each batch touches blocks all over the genome and a block
is decoded again for every batch that needs it (a dense track: ~2.3 times each, 5x the time of one pass in
genome order). A reading process (``BigWigTruth.start_reading``) then reads every window of its rows once, in
genome order, into an unnamed temporary file in the private temporary directory (removed by the system when
closed, even if the process is killed), in that order (one ``pwrite`` per ``WINDOWS`` windows: one per window, at
its row's place, took ~6 us each, 0.6 s a 100k-window track), and each batch's rows are read back from there, one
``preadv`` per run of them lying one after another (~2 us a row): the same values. Not done where the windows are
nearly in order already, or where the file would take more than ``MAX_BYTES`` or half the free space there.
"""

import os
import tempfile
from typing import Optional

import numpy as np

from ..process import private_temp_dir

DISORDER = 0.01  # windows stepping back in the genome, as a share of all steps, from which the file is written
MAX_BYTES = 4 << 30  # the largest temporary file written (N x L float32 of one track)
WINDOWS = 2048  # windows read at a time in genome order (8 MB of values at L = 1000)
_IOV_MAX = 1024  # buffers a ``preadv`` takes at most (Linux)


def out_of_order(keys: np.ndarray) -> bool:
    """Whether more than ``DISORDER`` of the steps from one window's key (chromosome << 32 | start) to the next
    go back."""
    return len(keys) > 1 and np.count_nonzero(keys[1:] < keys[:-1]) > DISORDER * (len(keys) - 1)


def _room(directory: str, nbytes: int) -> bool:
    """Whether ``nbytes`` fit ``MAX_BYTES`` and half the space free in ``directory``."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return nbytes <= MAX_BYTES and 2 * nbytes <= stats.f_bavail * stats.f_frsize


class WindowsInGenomeOrder:
    """Rows ``first..first + n`` of one file's windows (``width`` values each, float32), kept in genome order in an
    unnamed temporary file; ``read_into(i, j, out)`` reads rows ``i..j`` back."""

    def __init__(self, handle, first: int, width: int, where: np.ndarray):
        self._handle, self.first, self.width = handle, first, width
        self._where = where  # each row's (less ``first``) place in the file, -1 for a row not written

    @classmethod
    def written(cls, reader, first: int, rows: np.ndarray, chrom_ids: np.ndarray, starts: np.ndarray,
                ends: np.ndarray) -> Optional["WindowsInGenomeOrder"]:
        """``reader``'s windows [starts, ends) (all of one width, on its chromosomes ``chrom_ids``) of ``rows`` (each
        at least ``first``, none twice) read in genome order into a new temporary file; None where they are nearly in
        order, of several widths, or where the file takes too much space or cannot be written (then the batches are
        read as before)."""
        keys = (chrom_ids.astype(np.int64) << 32) + starts
        widths = ends - starts
        if not len(rows) or not out_of_order(keys) or widths.min() != widths.max():
            return None
        width, directory = int(widths[0]), private_temp_dir()
        row_bytes = width * 4
        if not _room(directory, len(rows) * row_bytes):
            return None
        try:
            handle = tempfile.TemporaryFile(prefix="genome-order-", dir=directory)
        except OSError:
            return None
        try:
            order = np.argsort(keys, kind="stable")
            where = np.full(int(rows.max()) - first + 1, -1, dtype=np.int64)
            where[rows[order] - first] = np.arange(len(order))
            for a in range(0, len(order), WINDOWS):
                part = order[a:a + WINDOWS]
                values = reader.read(chrom_ids[part], starts[part], ends[part])
                _write_all(handle.fileno(), memoryview(values).cast("B"), a * row_bytes)
        except OSError:  # (a full disk): read as before
            handle.close()
            return None
        except BaseException:
            handle.close()
            raise
        return cls(handle, first, width, where)

    def read_into(self, i: int, j: int, out: np.ndarray) -> None:
        """Rows ``i..j`` into ``out`` ``(j - i, width)`` float32, each row contiguous (rows any distance apart: a
        track's rows of a batch of tracks; zeros for a row not written): one ``preadv`` per run of rows lying one
        after another in the file, into the rows where they lie (a memory map of the file gathered them ~2x faster,
        but mapped whole large folios: the process's RSS grew by the file's size)."""
        at = self._where[i - self.first:j - self.first]
        if not len(at):
            return
        row_bytes = self.width * 4
        whole = memoryview(out).cast("B") if out.flags.c_contiguous else None  # a run of rows: one buffer,
        rows = None if whole is not None else [memoryview(row).cast("B") for row in out]  # else a buffer a row
        apart = (np.diff(at) != 1) | (at[1:] < 0) | (at[:-1] < 0)  # a row starting a run (a row not written: alone)
        runs = np.concatenate(([0], np.flatnonzero(apart) + 1, [len(at)])).tolist()
        for first, stop in zip(runs[:-1], runs[1:]):
            if at[first] < 0:
                out[first] = 0.0
                continue
            buffers = [whole[first * row_bytes:stop * row_bytes]] if whole is not None else rows[first:stop]
            _read_all(self._handle.fileno(), buffers, int(at[first]) * row_bytes)

    def close(self) -> None:
        self._handle.close()


def _read_all(fd: int, buffers: list, at: int) -> None:
    """Fill ``buffers`` (byte memoryviews, in order) from byte ``at`` of ``fd`` on, ``IOV_MAX`` of them a call."""
    k = 0
    while k < len(buffers):
        got = os.preadv(fd, buffers[k:k + _IOV_MAX], at)
        if not got:
            raise OSError(f"the temporary file of the windows in genome order ended at byte {at}")
        at += got
        while k < len(buffers) and got >= len(buffers[k]):
            got -= len(buffers[k])
            k += 1
        if got:  # a buffer filled in part
            buffers[k] = buffers[k][got:]


def _write_all(fd: int, data: memoryview, at: int) -> None:
    while len(data):
        written = os.pwrite(fd, data, at)
        data, at = data[written:], at + written
