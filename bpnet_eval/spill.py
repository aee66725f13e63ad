"""Sorted runs of uint32 keys in bounded memory: buffered, sorted and spilled to a temporary file, read back
merged in ascending order, block by block.

``SortedRuns.add`` buffers keys; a full buffer is sorted and written as one run to an unnamed temporary file
in the private temporary directory (removed by the system when closed, even if the process is killed) by a thread
of its own, while keys go on filling a second buffer (sorting 16M keys takes ~0.7 s here, which the caller's work
no longer waits for). ``SortedRuns.merged`` yields ascending blocks of every key added (a k-way merge reading about
``block_values / n_runs`` keys per run at a time), so memory stays about ``2 * run_values + block_values`` keys
(plus 4096 per run) whatever the total.

Keys below a ``floor`` (which the caller may lower, never raise) are left unsorted when a run is spilled: they are
only sorted at the end, by ``settle``, where they are at or above the lowest key still wanted (the pooled auPRC
needs no key scoring below its lowest positive, which is known only at the end).
"""

import os
import queue
import tempfile
import threading
from typing import Iterator, Optional

import numpy as np

from .process import private_temp_dir

RUN_VALUES = 1 << 24  # keys buffered before a run is spilled: 64 MB
BLOCK_VALUES = 1 << 20  # keys per block read back (split over the runs while merging): 4 MB
MIN_READ_VALUES = 4096  # keys read from one run at a time, at least
KEY = np.dtype(np.uint32)


class SortedRuns:
    """uint32 keys, added in any order, read back sorted ascending in blocks of about ``block_values``; at most
    ``run_values`` kept in memory, the rest in sorted runs in a temporary file."""

    def __init__(self, run_values: Optional[int] = None, block_values: Optional[int] = None,
                 directory: Optional[str] = None):
        self.run_values = int(RUN_VALUES if run_values is None else run_values)
        self.block_values = int(BLOCK_VALUES if block_values is None else block_values)
        self.directory = directory
        self._buffer = np.empty(0, dtype=KEY)
        self._filled = 0
        self._spare = None  # the buffer of the run last spilled: filled next, once that run is written
        self._writing = None  # (thread, errors) sorting and writing the run last spilled
        self._file = None
        self._runs = []  # (offset in bytes, number of keys, how many of them come first, unsorted) of each run
        self._end = 0
        self._segments = None  # (offset in bytes, number of keys) of each sorted segment to merge (``settle``)
        self._kept = None  # the in-memory keys to merge, sorted (``settle``)
        self.floor = 0  # keys below it are written unsorted when a run is spilled (lowered by the caller only)
        self.n = 0

    def add(self, keys: np.ndarray) -> None:
        """Add keys (any shape; copied)."""
        keys = np.asarray(keys, dtype=KEY).ravel()
        self.n += keys.size
        while keys.size:
            take = min(keys.size, self.run_values - self._filled)
            if self._filled + take > self._buffer.size:  # grown as needed, up to run_values
                grown = np.empty(min(self.run_values, max(2 * self._buffer.size, self._filled + take)), dtype=KEY)
                grown[:self._filled] = self._buffer[:self._filled]
                self._buffer = grown
            self._buffer[self._filled:self._filled + take] = keys[:take]
            self._filled += take
            keys = keys[take:]
            if self._filled == self.run_values:
                self._spill()

    @property
    def spilled(self) -> bool:
        """Whether a run went to the temporary file."""
        return bool(self._runs)

    def _spill(self) -> None:
        """The buffer becomes the next run: sorted and written at the file's end by a thread started now (after the
        run before it is written: one at a time, in order, so the file is the same as written here); the buffer of
        that run takes the next keys."""
        self._wait()
        run = self._buffer[:self._filled]
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pooled-", dir=self.directory or private_temp_dir())
        below = _count_below(run, self.floor)  # left first, unsorted
        self._runs.append((self._end, run.size, below))
        errors = []
        writer = threading.Thread(target=_sort_and_write, args=(run, self._file.fileno(), self._end, errors, below),
                                  name="bpnet-eval-spill", daemon=True)
        writer.start()
        self._writing = (writer, errors)
        self._end += run.nbytes
        self._buffer, self._spare = (np.empty(0, dtype=KEY) if self._spare is None else self._spare), self._buffer
        self._filled = 0

    def _wait(self) -> None:
        """Wait for the run being written, if any; its error (a full disk), if any, is raised here."""
        if self._writing is not None:
            writer, errors = self._writing
            writer.join()
            self._writing = None
            if errors:
                raise errors[0]

    def _read(self, segment, start: int, count: int) -> np.ndarray:
        """``count`` keys (fewer at its end) of ``segment = (offset, size)`` of the file from key ``start``."""
        offset, size = segment
        count = min(count, size - start)
        data = os.pread(self._file.fileno(), count * KEY.itemsize, offset + start * KEY.itemsize)
        if len(data) != count * KEY.itemsize:
            raise OSError(f"the temporary file of the pooled auPRC was cut short ({self._file.name})")
        return np.frombuffer(data, dtype=KEY)

    def _first_at_least(self, segment, lowest: int) -> int:
        """The first key of the sorted ``segment`` that is ``>= lowest`` (its size where none is): a bisection reading
        one key a step."""
        first, stop = 0, segment[1]
        while first < stop:
            middle = (first + stop) // 2
            if int(self._read(segment, middle, 1)[0]) < lowest:
                first = middle + 1
            else:
                stop = middle
        return first

    def settle(self, lowest: int = 0) -> int:
        """Keep only the keys ``>= lowest`` for ``merged``; returns how many there are. The unsorted keys of each run
        that are kept (those below the floor when it was spilled) are sorted and written at the file's end as a run
        of their own (a run at a time: bounded memory); the kept keys of a sorted run are found by bisection."""
        memory = self._buffer[:self._filled]  # sorted in place (read once, at the end) while the last run is written
        memory = _sorted_from(memory, _count_below(memory, lowest))
        self._wait()
        self._spare = None
        segments = []
        for offset, size, unsorted in self._runs:
            if unsorted:  # read a block at a time, its kept keys only held
                keys = np.concatenate([np.zeros(0, KEY)] + [block[block >= lowest] for block in (
                    self._read((offset, size), first, min(self.block_values, unsorted - first))
                    for first in range(0, unsorted, self.block_values))])
                if keys.size:
                    keys.sort()
                    segments.append((self._end, keys.size))
                    _write(keys, self._file.fileno(), self._end)
                    self._end += keys.nbytes
            segment = (offset + unsorted * KEY.itemsize, size - unsorted)
            first = self._first_at_least(segment, lowest) if lowest else 0
            if first < segment[1]:
                segments.append((segment[0] + first * KEY.itemsize, segment[1] - first))
        self._kept, self._segments = memory, segments
        return memory.size + sum(size for _, size in segments)

    def merged(self) -> Iterator[np.ndarray]:
        """Every key kept (``settle``: every key added, unless a lower bound was set there), ascending, in blocks (each
        block sorted, each key of a block <= every key after it)."""
        if self._segments is None:
            self.settle()
        memory, segments = self._kept, self._segments
        if not segments:
            for first in range(0, memory.size, self.block_values):
                yield memory[first:first + self.block_values]
            return
        # about block_values keys per merge step in all, and at least MIN_READ_VALUES read per run at a time
        step = max(min(MIN_READ_VALUES, self.block_values), self.block_values // (len(segments) + 1))
        sources = [memory] + segments
        starts = [0] * len(sources)
        blocks = [memory[:step]] + [self._read(segment, 0, step) for segment in segments]
        sizes = [memory.size] + [size for _, size in segments]
        while True:
            live = [i for i, block in enumerate(blocks) if block.size]
            if not live:
                return
            # every key <= the smallest last key of a live block is in the blocks read so far
            bound = min(blocks[i][-1] for i in live)
            taken = []
            for i in live:
                cut = int(np.searchsorted(blocks[i], bound, side="right"))
                taken.append(blocks[i][:cut])
                starts[i] += cut
                blocks[i] = blocks[i][cut:]
                if blocks[i].size == 0 and starts[i] < sizes[i]:
                    blocks[i] = (sources[i][starts[i]:starts[i] + step] if i == 0
                                 else self._read(sources[i], starts[i], step))
            block = np.concatenate(taken)
            block.sort(kind="stable")  # sorted pieces end to end: numpy's stable sort merges the runs it finds
            yield block

    def close(self) -> None:
        """Remove the temporary file and free the buffers (a run still being written is waited for; its error, if
        any, is not raised: the keys are being given up)."""
        try:
            self._wait()
        except Exception:  # (what merged() would have raised)
            pass
        self._spare = self._kept = self._segments = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self._buffer = np.empty(0, dtype=KEY)


def merged_ahead(runs: SortedRuns, depth: int = 2) -> Iterator[np.ndarray]:
    """``runs.merged()``'s blocks, merged by a thread of its own up to ``depth`` blocks ahead of the caller: numpy's
    sorts and the caller's work on each block (numpy's too) release the interpreter's lock, so they run side by side.
    An error of the merge is raised here; leaving early stops the thread (waited for)."""
    items = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def merge() -> None:
        try:
            for block in runs.merged():
                if not put(("block", block)):
                    return
            put(("end", None))
        except BaseException as err:  # (raised by the caller)
            put(("error", err))

    merger = threading.Thread(target=merge, name="bpnet-eval-merge", daemon=True)
    merger.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        merger.join()


def _sort_and_write(run: np.ndarray, fd: int, offset: int, errors: list, below: int = 0) -> None:
    """Put the ``below`` smallest keys of ``run`` first, in no order, and the rest after them sorted, in place; write
    it whole at ``offset`` of ``fd`` (a spill's thread; numpy's partition, sort and ``pwrite`` release the
    interpreter's lock); an error goes to ``errors``."""
    try:
        _sorted_from(run, below)
        _write(run, fd, offset)
    except BaseException as err:  # (re-raised by the caller's next wait)
        errors.append(err)


def _count_below(keys: np.ndarray, bound: int) -> int:
    """How many of ``keys`` are below ``bound`` (0: none, without looking)."""
    return int(np.count_nonzero(keys < bound)) if bound else 0


def _sorted_from(keys: np.ndarray, below: int) -> np.ndarray:
    """``keys`` in place with its ``below`` smallest first, in no order, and the rest after them sorted, which it
    returns (a view)."""
    if 0 < below < keys.size:
        keys.partition(below)
    keys[below:].sort()
    return keys[below:]


def _write(keys: np.ndarray, fd: int, offset: int) -> None:
    """Write ``keys`` whole at ``offset`` of ``fd``."""
    written = os.pwrite(fd, memoryview(keys).cast("B"), offset)
    if written != keys.nbytes:  # a regular file is written whole but on an error
        raise OSError(f"the temporary file of the pooled auPRC took {written} of {keys.nbytes} bytes")
