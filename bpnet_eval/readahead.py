"""Reading ahead in worker processes: observed bigWig windows are decoded into shared memory while the
main process imports torch, checks values and computes.

A worker is forked once the inputs are validated and before torch is imported (so the child never holds
torch's threads, and the import overlaps the reading). Batch ``k`` goes to worker ``k % W`` and into slot
``k % (W * depth)`` of one anonymous shared mapping (no ``/dev/shm`` needed, so small container limits do
not matter). A worker fills a slot only after the main process hands it back (one byte on the worker's
credit pipe) and reports each batch on its result pipe; a failure travels back as the pickled exception and
is raised by ``read`` in the main process. A batch returned by ``read`` stays valid until ``held`` more
batches have been read: the pipeline computes batch ``k`` while batch ``k + 1`` is checked.

Used only where ``fork`` is safe: on Linux, from a process running no other Python thread. Elsewhere the pipeline
reads in a thread of its own process as before.
"""

import mmap
import os
import pickle
import signal
import struct
import sys
import threading
import warnings
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import BpnetEvalError

_HEADER = struct.Struct("<qq")  # batch index, length of a pickled exception (0: the slot is filled)


def fork_is_safe() -> bool:
    """On Linux, with no other Python thread running. Native thread pools (OpenBLAS's, started when numpy
    is imported, or torch's) may exist: they wait on their own locks, and the child never calls into them;
    what it runs (numpy, zlib, ``pread``, the interpreter, whose locks ``fork`` resets) is safe."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


class WorkerStopped(BpnetEvalError):
    """A reading worker ended without reporting its batch (killed, out of memory, crashed)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> Optional[bytes]:
    """``size`` bytes, or None at end of file."""
    parts, left = [], size
    while left:
        part = os.read(fd, left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class ProcessReadAhead:
    """``read(i, j)`` of ``source`` for the consecutive batches ``bounds``, filled ahead by forked workers.

    Parameters
    ----------
    source : object with ``read(i, j) -> (j - i, S, L) float32``, ``n_tracks``, ``close()``
        Must be usable after ``fork`` (the bigWig reader uses ``pread`` on its own descriptor).
    bounds : sequence of (int, int)
        The batches, in the order they will be read.
    length : int
        L, the window width.
    workers : int
        Processes; batch ``k`` is read by worker ``k % workers``.
    held : int
        Batches the caller uses at once (a batch's slot is reused after ``held`` later reads).
    memory : int
        Bytes of shared memory for the batches read ahead (at least ``held`` + 2 batches per worker): the
        workers fill it while the main process imports torch (about a second).
    """

    def __init__(self, source, bounds: Sequence[Tuple[int, int]], length: int, workers: int = 1, held: int = 2,
                 memory: int = 256 << 20):
        self.source = source
        self.bounds = [(int(i), int(j)) for i, j in bounds]
        self.n_tracks = source.n_tracks
        self.workers = max(1, min(int(workers), len(self.bounds)))
        self.held = held
        rows = max((j - i for i, j in self.bounds), default=0)
        slot_bytes = max(1, rows * self.n_tracks * int(length) * 4)
        least = 2 + -(-held // self.workers)  # per worker: its share of the held batches plus two ahead
        most = max(least, -(-len(self.bounds) // self.workers))  # no more slots than batches
        self.depth = min(most, max(least, memory // (slot_bytes * self.workers)))
        n_slots = self.workers * self.depth
        shape = (n_slots, rows, self.n_tracks, int(length))
        self._mapping = mmap.mmap(-1, max(1, int(np.prod(shape)) * 4))
        self._slots = np.frombuffer(self._mapping, dtype=np.float32, count=int(np.prod(shape))).reshape(shape)
        self._next = 0
        self._pids, self._credit_fds, self._result_fds = [], [], []
        try:
            for w in range(self.workers):
                self._fork(w)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ worker side
    def _fork(self, w: int) -> None:
        credit_read, credit_write = os.pipe()
        result_read, result_write = os.pipe()
        with warnings.catch_warnings():  # Python 3.12+ warns about any native thread; see fork_is_safe
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: never returns, never runs the parent's exit handlers
            code = 1
            try:
                for fd in self._credit_fds + self._result_fds + [credit_write, result_read]:
                    os.close(fd)  # other workers' pipes: their ends must close when the main process goes
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process stops us
                self._work(w, credit_read, result_write)
                code = 0
            finally:
                os._exit(code)
        os.close(credit_read)
        os.close(result_write)
        self._pids.append(pid)
        self._credit_fds.append(credit_write)
        self._result_fds.append(result_read)

    def _work(self, w: int, credits: int, results: int) -> None:
        """Fill this worker's batches in order, each once its slot is free; stop at the first failure or
        when the main process closes the credit pipe."""
        n_slots = len(self._slots)
        for n, k in enumerate(range(w, len(self.bounds), self.workers)):
            if n >= self.depth and not os.read(credits, 1):
                return  # the main process stopped reading
            i, j = self.bounds[k]
            try:
                self._slots[k % n_slots, :j - i] = self.source.read(i, j)
            except BaseException as err:  # sent back and raised by the main process's read()
                try:
                    payload = pickle.dumps(err)
                except Exception:
                    payload = pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
                _write_all(results, _HEADER.pack(k, len(payload)) + payload)
                return
            try:
                _write_all(results, _HEADER.pack(k, 0))
            except BrokenPipeError:
                return

    # ------------------------------------------------------------------ main side
    def read(self, i: int, j: int) -> np.ndarray:
        """Observed counts ``(j - i, S, L)`` of the next batch (a view into shared memory)."""
        k = self._next
        if k >= len(self.bounds) or self.bounds[k] != (i, j):
            raise RuntimeError(f"batches must be read in the order given: expected {self.bounds[k:k + 1]}, "
                               f"got {(i, j)}")
        self._next += 1
        released = k - self.held
        if released >= 0 and released + len(self._slots) < len(self.bounds):
            try:
                _write_all(self._credit_fds[released % self.workers], b"\0")
            except BrokenPipeError:
                pass  # the worker has stopped: its result pipe says why
        fd = self._result_fds[k % self.workers]
        header = _read_exact(fd, _HEADER.size)
        if header is None:
            raise WorkerStopped(f"the process reading {self.describe_source()} stopped before rows {i + 1}..{j} "
                                "(killed or out of memory?); rerun, or give --read-workers 0 to read in-process")
        _, size = _HEADER.unpack(header)
        if size:
            raise pickle.loads(_read_exact(fd, size) or pickle.dumps(RuntimeError("a reading worker failed")))
        return self._slots[k % len(self._slots), :j - i]

    def describe_source(self) -> str:
        paths = getattr(self.source, "paths", None)
        return ", ".join(map(str, paths)) if paths else "the observed tracks"

    def close(self) -> None:
        """Stop the workers (at once, unless every batch was read) and free the shared memory."""
        finished = self._next >= len(self.bounds)
        for fd in self._credit_fds + self._result_fds:
            os.close(fd)
        self._credit_fds, self._result_fds = [], []
        for pid in self._pids:
            if not finished:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._pids = []
        self._slots = None
        if self._mapping is not None:
            try:
                self._mapping.close()
            except BufferError:  # a batch view is still referenced: the mapping goes with it
                pass
            self._mapping = None

    def __del__(self):
        if getattr(self, "_pids", None) or getattr(self, "_mapping", None) is not None:
            self.close()
