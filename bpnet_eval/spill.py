"""Sorted runs of uint32 keys in bounded memory: buffered, sorted and spilled to a temporary file, read back
merged in ascending order, block by block.

``SortedRuns.add`` buffers keys; a full buffer is sorted and written as one run to an unnamed temporary file
in the private temporary directory (removed by the system when closed, even if the process is killed).
``SortedRuns.merged`` yields ascending blocks of every key added (a k-way merge reading about
``block_values / n_runs`` keys per run at a time), so memory stays about ``run_values + block_values`` keys
(plus 4096 per run) whatever the total.
"""

import os
import tempfile
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
        self._file = None
        self._runs = []  # (offset in bytes, number of keys) of each spilled run
        self._end = 0
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
        run = self._buffer[:self._filled]
        run.sort()
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pooled-", dir=self.directory or private_temp_dir())
        os.pwrite(self._file.fileno(), run.tobytes(), self._end)  # whole run: pwrite may write less only on error
        self._runs.append((self._end, run.size))
        self._end += run.nbytes
        self._filled = 0

    def _read(self, run: int, start: int, count: int) -> np.ndarray:
        offset, size = self._runs[run]
        count = min(count, size - start)
        data = os.pread(self._file.fileno(), count * KEY.itemsize, offset + start * KEY.itemsize)
        if len(data) != count * KEY.itemsize:
            raise OSError(f"the temporary file of the pooled auPRC was cut short ({self._file.name})")
        return np.frombuffer(data, dtype=KEY)

    def merged(self) -> Iterator[np.ndarray]:
        """Every key added, ascending, in blocks (each block sorted, each key of a block <= every key after it)."""
        memory = self._buffer[:self._filled]
        memory.sort()  # in place: the buffer is read once, at the end
        if not self._runs:
            for first in range(0, memory.size, self.block_values):
                yield memory[first:first + self.block_values]
            return
        # about block_values keys per merge step in all, and at least MIN_READ_VALUES read per run at a time
        step = max(min(MIN_READ_VALUES, self.block_values), self.block_values // (len(self._runs) + 1))
        sources = [memory] + [None] * len(self._runs)
        starts = [0] * len(sources)
        blocks = [memory[:step]] + [self._read(r, 0, step) for r in range(len(self._runs))]
        sizes = [memory.size] + [size for _, size in self._runs]
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
                                 else self._read(i - 1, starts[i], step))
            block = np.concatenate(taken)
            block.sort(kind="stable")  # sorted pieces end to end: numpy's stable sort merges the runs it finds
            yield block

    def close(self) -> None:
        """Remove the temporary file and free the buffer."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._buffer = np.empty(0, dtype=KEY)
