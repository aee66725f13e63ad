"""Forked worker processes: observed bigWig windows read ahead into shared memory, and a call (drawing
the figures) prepared ahead, while the main process imports torch and computes.

Workers are forked once the inputs are validated and before torch is imported (so a child never holds
torch's threads, and the import overlaps the children's work). A worker talks to the main process
through two pipes; a failure travels back as the pickled exception and is raised in the main process.
A worker dies with the main process (``PR_SET_PDEATHSIG``) and ignores Ctrl-C (the main process stops it).

``ProcessReadAhead``: batch ``k`` goes to worker ``k % W`` and into slot ``k % n_slots`` of one anonymous
shared mapping (no ``/dev/shm`` needed, so small container limits do not matter). A worker fills a slot
only after the main process hands it back (one byte on the worker's credit pipe). A batch returned by
``read`` stays valid until ``held`` more batches have been read: the pipeline computes batch ``k`` while
batch ``k + 1`` is checked. A worker that reads whole batches can also run ``work`` on each one it filled
(the seed losses' count terms) and send the result back with it, so that work leaves the main process.

``BackgroundCall``: runs ``prepare()`` at once (importing matplotlib), then ``function(*args)`` when
``submit`` sends the arguments; ``result`` returns what it returned.

``ForkedCall``: ``call()`` in a process forked now (part of regions.tsv, formatted while the main process
writes the rest of the report); ``call_forked``: several calls at once (the figures), waited for together.

Used only where ``fork`` is safe: on Linux, from a process running no other Python thread. Elsewhere the
pipeline reads in a thread of its own process and draws in the main process, as before.
"""

import ctypes
import gc
import mmap
import os
import pickle
import signal
import struct
import warnings
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .errors import BpnetEvalError


class WorkerStopped(BpnetEvalError):
    """A worker ended without answering (killed, out of memory, crashed)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> Optional[bytearray]:
    """``size`` bytes, or None at end of file: read into one buffer (``os.read(fd, size)`` would allocate ``size``
    bytes for each pipe-full it returns: 100 MB/s for a message of tens of MB)."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        part = os.readv(fd, [view[got:]])
        if not part:
            return None
        got += part
    return buffer


_HEADER = struct.Struct("<qqq")  # item, payload length, 1 when the payload is a pickled exception
_PARENT_FDS = set()  # the main process's ends of every worker's pipes: closed in each new child
PR_SET_PDEATHSIG = 1


def send(fd: int, item: int, value=None, failed: bool = False) -> None:
    """One message: ``item``, and ``value`` (an exception when ``failed``) pickled unless None."""
    if failed:
        try:
            payload = pickle.dumps(value)
        except Exception:
            payload = pickle.dumps(RuntimeError(f"{type(value).__name__}: {value}"))
    else:
        payload = b"" if value is None else pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, _HEADER.pack(item, len(payload), int(failed)) + payload)


def receive(fd: int, stopped: str):
    """``(item, value)`` of the next message; raises the exception a worker sent, or ``WorkerStopped``
    (message ``stopped``) when the worker ended without answering."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        raise WorkerStopped(stopped)
    item, size, failed = _HEADER.unpack(header)
    payload = _read_exact(fd, size) if size else b""
    if payload is None:
        raise WorkerStopped(stopped)
    value = pickle.loads(payload) if size else None
    if failed:
        raise value
    return item, value


def fork_worker(body) -> Tuple[int, int, int]:
    """Fork a child running ``body(from_parent_fd, to_parent_fd)``; return ``(pid, to_child_fd,
    from_child_fd)`` for the parent. The child never returns and never runs the parent's exit handlers."""
    down_read, down_write = os.pipe()
    up_read, up_write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about any native thread; see environment.fork_is_safe
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd in _PARENT_FDS | {down_write, up_read}:
                os.close(fd)  # so that other workers see end of file when the main process goes
            _PARENT_FDS.clear()  # closed here: a process this child forks must not close their numbers again
            try:
                ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            except (OSError, AttributeError):
                pass
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            gc.freeze()  # its collections leave the objects it was forked with alone: their pages stay shared
            body(down_read, up_write)
            code = 0
        finally:
            os._exit(code)
    os.close(down_read)
    os.close(up_write)
    _PARENT_FDS.update((down_write, up_read))
    return pid, down_write, up_read


def stop_worker(pid: int, fds, kill: bool) -> None:
    """Close the parent's ends of a worker's pipes and reap it (killed first when ``kill``)."""
    for fd in fds:
        _PARENT_FDS.discard(fd)
        os.close(fd)
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class ProcessReadAhead:
    """``read(i, j)`` of ``source`` for the consecutive batches ``bounds``, filled ahead by forked workers.

    With at least as many tracks as workers, each worker reads its own tracks of every batch (its files only:
    no file is decoded twice, and the first batch's decoding is shared out); otherwise batch ``k`` is read
    by worker ``k % workers``.

    Parameters
    ----------
    source : TruthSource (``read_into(i, j, out, tracks)`` of ``(j - i, S, L)`` ``dtype``, ``n_tracks``, ``paths``)
        Must be usable after ``fork`` (the bigWig reader uses ``pread`` on its own descriptor).
    bounds : sequence of (int, int)
        The batches, in the order they will be read.
    length : int
        L, the window width.
    workers : int
        Processes.
    held : int
        Batches the caller uses at once (a batch's slot is reused after ``held`` later reads).
    memory : int
        Bytes of shared memory for the batches read ahead (at least ``held`` + 2 batches per worker): the
        workers fill it while the main process starts computing.
    work : callable(numpy.ndarray), optional
        Run by a worker on each batch it filled (the ``(j - i, S, L)`` array ``read`` returns), where workers read
        whole batches; its value (pickled back) comes with the batch from ``read_with_work``. Where the workers
        split the tracks, each runs it on its tracks of the batch and ``merge_work`` joins their values (None
        without ``merge_work``).
    work_bytes : callable(shape), optional
        The most bytes ``work``'s pickled value takes for a batch of ``shape`` (default: as many as the batch):
        memory set aside beside each slot (virtual: pages are used as values fill them). A bigger value goes
        through the pipe, which holds the worker until the main process reads that batch.
    dtype : numpy dtype, optional
        The type of the values (default float32).
    merge_work : callable(list, list, int, int), optional
        ``merge_work(values, track_groups, S, L)``: ``work`` of a batch from its values on each worker's tracks.
    """

    def __init__(self, source, bounds: Sequence[Tuple[int, int]], length: int, workers: int = 1, held: int = 2,
                 memory: int = 256 << 20, work: Optional[Callable[[np.ndarray], object]] = None,
                 work_bytes: Optional[Callable[[tuple], int]] = None, dtype=np.float32,
                 merge_work: Optional[Callable[[list, list, int, int], object]] = None):
        self.source = source
        self.bounds = [(int(i), int(j)) for i, j in bounds]
        self.n_tracks = source.n_tracks
        self.workers = max(1, min(int(workers), len(self.bounds)))
        self.held = held
        # tracks per worker (every batch), or None: batches shared out whole
        self.tracks = ([list(map(int, group)) for group in np.array_split(np.arange(self.n_tracks), self.workers)]
                       if 1 < self.workers <= self.n_tracks else None)
        self.work = work if self.tracks is None or merge_work is not None else None
        self.merge_work, self.length = merge_work, int(length)
        rows = max((j - i for i, j in self.bounds), default=0)
        dtype = np.dtype(dtype)
        slot_bytes = max(1, rows * self.n_tracks * int(length) * dtype.itemsize)
        if self.tracks is None:
            least = 2 + -(-held // self.workers)  # per worker: its share of the held batches plus two ahead
            most = max(least, -(-len(self.bounds) // self.workers))  # no more slots than batches
            self.depth = min(most, max(least, memory // (slot_bytes * self.workers)))
            n_slots = self.workers * self.depth
        else:
            least, most = held + 2, max(held + 2, len(self.bounds))
            self.depth = n_slots = min(most, max(least, memory // slot_bytes))
        shape = (n_slots, rows, self.n_tracks, int(length))
        self._mapping = mmap.mmap(-1, max(1, int(np.prod(shape)) * dtype.itemsize))
        self._slots = np.frombuffer(self._mapping, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        # what ``work`` gave on a batch travels pickled beside its slot (a pipe would hold the worker until the main
        # process reads that batch: no reading ahead), in ``work_bytes`` at most; a bigger value goes through the pipe
        self._side_bytes = (0 if self.work is None else slot_bytes if work_bytes is None else
                            int(work_bytes((rows, self.n_tracks, int(length)))))
        self._parts = 1 if self.tracks is None else len(self.tracks)  # values of ``work`` a batch: one per worker
        self._side = mmap.mmap(-1, n_slots * self._parts * self._side_bytes + 8) if self._side_bytes else None
        # the batch the main process waits for (or will read next): a worker filling that batch or the one after it
        # leaves ``work`` to the main process, which then does it itself (the work goes where there is time for it:
        # a worker that keeps less than a batch ahead would make the main process wait for the work)
        self._wanted = np.frombuffer(self._side, dtype=np.int64, count=1) if self._side is not None else None
        self._next = 0
        self._pids, self._credit_fds, self._result_fds = [], [], []
        try:
            for w in range(self.workers):
                self._fork(w)
        except BaseException:
            self.close()
            raise

    def _batches_of(self, w: int) -> range:
        """The batches worker ``w`` reads, in order."""
        return range(len(self.bounds)) if self.tracks else range(w, len(self.bounds), self.workers)

    def _workers_of(self, k: int) -> list:
        """The workers that read (part of) batch ``k``."""
        return list(range(self.workers)) if self.tracks else [k % self.workers]

    # ------------------------------------------------------------------ worker side
    def _fork(self, w: int) -> None:
        pid, credits, results = fork_worker(lambda credits, results: self._work(w, credits, results))
        self._pids.append(pid)
        self._credit_fds.append(credits)
        self._result_fds.append(results)

    def _work(self, w: int, credits: int, results: int) -> None:
        """Fill this worker's batches (its tracks of them) in order, each once its slot is free; stop at the first
        failure or when the main process closes the credit pipe."""
        n_slots = len(self._slots)
        tracks = None if self.tracks is None else self.tracks[w]
        try:
            self.source.start_reading(tracks, ForkedCall)
        except BaseException as err:  # raised by the main process's read() of this worker's first batch
            send(results, 0, err, failed=True)
            return
        for n, k in enumerate(self._batches_of(w)):
            if n >= self.depth and not os.read(credits, 1):
                return  # the main process stopped reading
            i, j = self.bounds[k]
            try:
                batch = self._slots[k % n_slots, :j - i]
                self.source.read_into(i, j, batch, tracks)
                worked = (self.work(batch if tracks is None else batch[:, tracks])
                          if self.work is not None and self._wanted[0] < k - 1 else None)
            except BaseException as err:  # raised by the main process's read()
                send(results, k, err, failed=True)
                return
            try:
                send(results, k, self._put_aside(self._side_place(k % n_slots, w), worked))
            except BrokenPipeError:
                return

    def _side_place(self, slot: int, w: int) -> int:
        """Where the value of ``work`` of worker ``w`` on the batch in ``slot`` is put aside (bytes from the start)."""
        return 8 + (slot * self._parts + (0 if self.tracks is None else w)) * self._side_bytes

    def _put_aside(self, at: int, worked):
        """The message for ``worked``: ``(size, None)`` where its pickle was written at ``at``, else ``(0, worked)``."""
        if worked is None:
            return 0, None
        payload = pickle.dumps(worked, protocol=pickle.HIGHEST_PROTOCOL)
        if len(payload) > self._side_bytes:
            return 0, worked
        self._side[at:at + len(payload)] = payload
        return len(payload), None

    # ------------------------------------------------------------------ main side
    def is_next(self, i: int, j: int) -> bool:
        """Whether rows ``i..j`` are the next batch (``read`` takes the batches in the order given, once each)."""
        return self._next < len(self.bounds) and self.bounds[self._next] == (i, j)

    def read(self, i: int, j: int) -> np.ndarray:
        """Observed counts ``(j - i, S, L)`` of the next batch (a view into shared memory)."""
        return self.read_with_work(i, j)[0]

    def read_with_work(self, i: int, j: int) -> Tuple[np.ndarray, object]:
        """``read(i, j)``, and what ``work`` gave on that batch in its worker (None without ``work``)."""
        k = self._next
        if not self.is_next(i, j):
            raise RuntimeError(f"batches must be read in the order given: expected {self.bounds[k:k + 1]}, "
                               f"got {(i, j)}")
        self._next += 1
        released = k - self.held
        if released >= 0 and released + len(self._slots) < len(self.bounds):
            for w in self._workers_of(released):
                try:
                    _write_all(self._credit_fds[w], b"\0")
                except BrokenPipeError:
                    pass  # the worker has stopped: its result pipe says why
        if self._wanted is not None:
            self._wanted[0] = k
        slot, parts = k % len(self._slots), []
        for w in self._workers_of(k):
            _, (size, worked) = receive(self._result_fds[w],
                                        f"the process reading {self.describe_source()} stopped before rows "
                                        f"{i + 1}..{j} (killed or out of memory?); rerun, or give --read-workers 0 "
                                        "to read in-process")
            if size:
                at = self._side_place(slot, w)
                worked = pickle.loads(self._side[at:at + size])
            parts.append(worked)
        if self.tracks is None:
            return self._slots[slot, :j - i], parts[0]
        joined = (self.merge_work(parts, self.tracks, self.n_tracks, self.length)
                  if self.work is not None and all(part is not None for part in parts) else None)
        return self._slots[slot, :j - i], joined

    def describe_source(self) -> str:
        return ", ".join(map(str, self.source.paths)) or "the observed tracks"

    def close(self) -> None:
        """Stop the workers (at once, unless every batch was read) and free the shared memory."""
        finished = self._next >= len(self.bounds)
        for pid, fds in zip(self._pids, zip(self._credit_fds, self._result_fds)):
            stop_worker(pid, fds, kill=not finished)
        self._credit_fds, self._result_fds = [], []
        self._pids = []
        self._slots = None
        if self._side is not None:
            self._wanted = None
            try:
                self._side.close()
            except BufferError:  # still referenced: the mapping goes with it
                pass
            self._side = None
        if self._mapping is not None:
            try:
                self._mapping.close()
            except BufferError:  # a batch view is still referenced: the mapping goes with it
                pass
            self._mapping = None

    def __del__(self):
        if getattr(self, "_pids", None) or getattr(self, "_mapping", None) is not None:
            self.close()


def _answer(call, answers: int) -> None:
    """Send ``call()``'s value, or what it raised."""
    try:
        value = call()
    except BaseException as err:
        send(answers, 0, err, failed=True)
        return
    send(answers, 0, value)


class ForkedCall:
    """``call()`` in a process forked now, while this one goes on.

    ``result()`` waits for its value (pickled back) or raises what the call raised (``WorkerStopped`` when the
    process ended without answering); ``close()`` reaps the process, killed first unless it answered. A context
    manager closing it.
    """

    def __init__(self, call, what: str):
        self._start(lambda _requests, answers: _answer(call, answers), what)

    def _start(self, body, what: str) -> None:
        """Fork the process running ``body(from_parent_fd, to_parent_fd)`` (``fork_worker``)."""
        self.what = what
        self._answered = False
        self._pid, self._to_child, self._from_child = fork_worker(body)

    def result(self):
        _, value = receive(self._from_child, f"the process {self.what} stopped (killed or out of memory?)")
        self._answered = True
        return value

    def close(self) -> None:
        if self._pid is not None:
            stop_worker(self._pid, (self._to_child, self._from_child), kill=not self._answered)
            self._pid = None

    def __enter__(self) -> "ForkedCall":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def call_forked(calls: dict, what: str, here=None) -> dict:
    """``{key: call()}``, every call in a process of its own forked at once (``ForkedCall``), in the order of
    ``calls``, but the call of key ``here`` (if any): this process runs it once the others are forked (the longest:
    it starts at once, and no process is forked for it). Raises what a call raised, or ``WorkerStopped`` when a
    process ends without answering. Every process is reaped (the others killed) before this returns or raises."""
    started = {}
    try:
        for key, call in calls.items():
            if key != here:
                started[key] = ForkedCall(call, what)
        done = {here: calls[here]()} if here in calls else {}
        done.update((key, process.result()) for key, process in started.items())
        return {key: done[key] for key in calls}
    finally:
        for process in started.values():
            process.close()


class BackgroundCall(ForkedCall):
    """``function(*args)`` in a forked process that ran ``prepare()`` (e.g. heavy imports) as soon as it started.

    ``submit(*args)`` sends the arguments (pickled); ``result()`` waits for the return value (pickled back) or
    raises what the call raised: one ``result()`` per ``submit``, in order (the process takes calls until it is
    closed or a call fails). ``close()`` stops the process if it is still running.
    """

    def __init__(self, prepare, function, what: str):
        self._submitted = False
        self._start(lambda requests, answers: self._serve(prepare, function, requests, answers), what)

    @staticmethod
    def _serve(prepare, function, requests: int, answers: int) -> None:
        # At the main process's priority: a run is bound by its total CPU, and a low one (nice 10) only left the
        # preparing to the run's end, where a short run then waited for it (10k regions: 1.45 -> 1.31 s, 10%).
        try:
            prepare()
            while True:
                header = _read_exact(requests, 8)
                if header is None:
                    return  # closed: no more calls
                args = pickle.loads(_read_exact(requests, struct.unpack("<q", header)[0]) or b"")
                send(answers, 0, function(*args))
        except BaseException as err:
            send(answers, 0, err, failed=True)

    def submit(self, *args) -> None:
        payload = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
        self._submitted = True
        try:
            _write_all(self._to_child, struct.pack("<q", len(payload)) + payload)
        except BrokenPipeError:
            pass  # the process has stopped: result() says why
