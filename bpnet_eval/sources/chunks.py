"""Rows of a compressed, chunked HDF5 dataset, inflated by a pool of threads.

HDF5 inflates a gzip-compressed dataset (chrombpnet's ``predict`` writes its profiles so, in h5py's
automatic chunks of ~800-1,600 regions by 16 positions) one chunk after another in the calling thread,
with zlib, and a batch of rows that ends inside a row of chunks inflates that row again for the next
batch where the row does not fit HDF5's chunk cache (8 MB in HDF5 2.0, 1 MB before). ``rows_reader``
reads such a dataset the way HDF5 would, chunk by chunk: each chunk's stored bytes (``pread`` at the
address HDF5's chunk index gives, or ``read_direct_chunk``) through the filters in reverse order
(inflate by libdeflate where installed, else ISA-L or zlib; un-shuffle by numpy), several chunks at once in threads
(inflating releases Python's lock), and the last row of chunks kept for the batch after. An uncompressed
dataset stored contiguously or in chunks of whole rows (what h5py writes without options, and most peers' files) is
read by ``preadv`` straight into the result at the addresses HDF5 gives (``PlainRows``: h5py copies each chunk
through a buffer of its own, 1.5x the time). Datasets stored otherwise (other filters, chunks that split a row,
another byte order, non-numeric types, external or virtual storage) are read by h5py as before, and a read that fails
here (a damaged chunk, a chunk never written) is read by h5py too, which gives its values or its error.
"""

from concurrent.futures import ThreadPoolExecutor
from itertools import product
import math
import os
from typing import Callable, Optional

import h5py
import numpy as np

from ..environment import allotted_cpus
from ..input_files import read_runs
from .deflate import INFLATE_ERRORS, inflate_sized

DEFLATE, SHUFFLE = h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE
# A row of chunks decoded at a time is kept for the next batch; above this size, h5py reads the dataset.
MAX_CHUNK_ROW_BYTES = 64 << 20
MAX_INFLATE_THREADS = 8
# Chunks stored next to each other are read by one ``pread`` of at most this many bytes.
MAX_READ_BYTES = 16 << 20
# A dataset's chunk index is kept (``ChunkIndex``, 20 bytes a chunk) up to this many chunks; beyond, HDF5 reads it.
MAX_INDEXED_CHUNKS = 1 << 22
INDEX_BLOCK = 1 << 14  # chunks listed, then entered into the index, at a time
_READ_FAILURES = (OSError, RuntimeError, ValueError, KeyError, *INFLATE_ERRORS)


def chunk_filters(dataset: h5py.Dataset):
    """The filter ids of ``dataset``'s pipeline in the order they were applied on writing, where this module reads
    it (chunked, deflate with or without shuffle, a plain numeric type, rows of chunks of at most
    ``MAX_CHUNK_ROW_BYTES``), else None."""
    if dataset.chunks is None or dataset.dtype.kind not in "biuf" or dataset.dtype.fields is not None:
        return None
    plist = dataset.id.get_create_plist()
    filters = tuple(plist.get_filter(k)[0] for k in range(plist.get_nfilters()))
    if DEFLATE not in filters or set(filters) - {DEFLATE, SHUFFLE}:
        return None
    row_bytes = dataset.chunks[0] * int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
    return filters if row_bytes <= MAX_CHUNK_ROW_BYTES else None


def unshuffle(data: bytes, itemsize: int):
    """Undo HDF5's shuffle filter: the chunk stores byte 0 of every element, then byte 1, ...; whole elements
    again, in order (bytes past the last whole element stay where they are), as bytes or a uint8 array. Copied one
    byte plane at a time: 2-4x faster than numpy's copy of the transposed planes (whose inner loop is the element)."""
    whole = len(data) // itemsize * itemsize
    if itemsize == 1 or not whole:
        return data
    planes = np.frombuffer(data, np.uint8, whole).reshape(itemsize, -1)
    out = np.empty(len(data), np.uint8)
    elements = out[:whole].reshape(-1, itemsize)
    for k in range(itemsize):
        elements[:, k] = planes[k]
    out[whole:] = np.frombuffer(data, np.uint8, len(data) - whole, whole)
    return out


def decode_chunk(stored: bytes, filter_mask: int, filters: tuple, itemsize: int, size: int):
    """A chunk's stored bytes through ``filters`` in reverse order, skipping those whose bit is set in
    ``filter_mask`` (HDF5 skips an optional filter that did not help that chunk); ``size``: a chunk's bytes (what
    inflating may give at most). Returns the bytes as ``bytes``, a ``bytearray`` or a uint8 array."""
    data = stored
    for k in reversed(range(len(filters))):
        if filter_mask >> k & 1:
            continue
        data = inflate_sized(data, size) if filters[k] == DEFLATE else unshuffle(data, itemsize)
    return data


class ChunkRows:
    """``read(i, j)``: rows ``i..j`` of a dataset that ``chunk_filters`` accepts (``filters``), as h5py reads them
    (native byte order), decoded a row of chunks at a time by ``threads`` threads."""

    def __init__(self, dataset: h5py.Dataset, filters: tuple, threads: int):
        self.dataset, self.filters, self.threads = dataset, filters, threads
        self.chunks, self.shape = dataset.chunks, dataset.shape
        self.dtype = dataset.dtype.newbyteorder("=")
        self._buffer = None  # the last row of chunks decoded (one row of chunks, allocated once) ...
        self._kept = self._kept_rows = None  # ... which row it is and how many rows of the dataset it has
        self._pool, self._pool_pid = None, None
        # each chunk's offset within a row of chunks, along the axes after the first, with where it lies in the row
        # (inside the dataset) and the part of the chunk that does
        self._offsets = list(product(*(range(0, n, c) for n, c in zip(self.shape[1:], self.chunks[1:]))))
        axes = list(zip(self.chunks[1:], self.shape[1:]))
        self._parts = {offset: (tuple(slice(o, min(o + c, n)) for o, (c, n) in zip(offset, axes)),
                                tuple(slice(0, min(c, n - o)) for o, (c, n) in zip(offset, axes)))
                       for offset in self._offsets}
        self._stored_dtype = dataset.dtype
        self._chunk_bytes = int(np.prod(self.chunks, dtype=np.int64)) * self.dtype.itemsize
        self._index, self._fd = None, None  # where each chunk is stored, and the file to read it from ...
        self._located = False  # ... once looked for

    def read(self, i: int, j: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Rows ``i..j`` (into ``out`` where given: ``(j - i, *shape[1:])`` of ``dtype``): each row of chunks they touch
        decoded once (the one kept from the read before is copied), every chunk of the read shared out among the
        threads in one go, rows of chunks inside ``i..j`` decoded straight into the result, the last one into the
        buffer kept for the next read."""
        out = np.empty((j - i, *self.shape[1:]), self.dtype) if out is None else out
        height = self.chunks[0]
        self._locate()
        jobs, partial = [], []  # the chunks to decode (into where), and the rows of chunks decoded beside the result
        for row in range(i // height, -(-j // height)):
            first = row * height
            rows = min(height, self.shape[0] - first)
            if self._kept == row:  # copied now: the buffer may take another row below
                lo, hi = max(i, first), min(j, first + rows)
                out[lo - i:hi - i] = self._buffer[lo - first:hi - first]
                continue
            if i <= first and first + rows <= j:
                target = out[first - i:first - i + rows]
            else:  # a row of chunks reaching past j is kept (the buffer); one starting before i is not
                if first + rows > j:
                    self._kept = None  # until decoded whole
                    if self._buffer is None:
                        self._buffer = np.empty((height, *self.shape[1:]), self.dtype)
                    target = self._buffer[:rows]
                else:
                    target = np.empty((rows, *self.shape[1:]), self.dtype)
                partial.append((first, target))
            jobs.extend((target, first, offset) for offset in self._offsets)
        self._decode(jobs)
        for first, decoded in partial:
            lo, hi = max(i, first), min(j, first + len(decoded))
            out[lo - i:hi - i] = decoded[lo - first:hi - first]
            if first + len(decoded) > j:
                self._kept, self._kept_rows = first // height, len(decoded)
        return out

    def _decode(self, jobs: list) -> None:
        """Decode the chunks ``(target, first row, offset)`` into their targets: split into one run of consecutive
        chunks per thread (a run's chunks stored next to each other in the file are read by one ``pread``)."""
        if not jobs:
            return
        parts = min(self.threads, len(jobs))
        size = -(-len(jobs) // parts)
        runs = [jobs[k:k + size] for k in range(0, len(jobs), size)]
        if len(runs) == 1:
            self._decode_run(runs[0])
        else:
            list(self._threads().map(self._decode_run, runs))

    def _decode_run(self, jobs: list) -> None:
        keys = [(first, *offset) for _, first, offset in jobs]
        for (target, _, offset), (filter_mask, stored) in zip(jobs, self._stored_run(keys)):
            self._place(target, offset, decode_chunk(stored, filter_mask, self.filters, self.dtype.itemsize,
                                                    self._chunk_bytes))

    def _locate(self) -> None:
        """Where every stored chunk lies in the file (HDF5's chunk index, listed once), and the file opened to read
        them with ``pread`` from any thread at once; neither where the file is not a plain one (a user block shifts
        HDF5's addresses; another driver) or the listing is not available: HDF5 reads each chunk then."""
        if not self._located:
            self._index, self._fd = chunk_index(self.dataset)
            self._located = True

    def _stored_run(self, keys: list) -> list:
        """``(filter mask, stored bytes)`` of the chunks at ``keys``, in order; chunks stored one after another in the
        file are read together, up to ``MAX_READ_BYTES`` at a time."""
        if self._fd is None:
            return [self.dataset.id.read_direct_chunk(key) for key in keys]
        masks, offsets, sizes = self._index.locate(keys)  # a chunk never written: KeyError (h5py gives its fill)
        return list(zip(masks, read_runs(self._pread, offsets, sizes, MAX_READ_BYTES)))

    def _pread(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise ValueError(f"the file ends inside the chunks at bytes {offset}-{offset + size}")
        return data

    def _place(self, target: np.ndarray, offset: tuple, data: bytes) -> None:
        """Write the part inside the dataset of the decoded chunk ``data`` into ``target`` (a row of chunks) at
        ``offset``."""
        if len(data) != self._chunk_bytes:
            raise ValueError(f"a chunk decodes to {len(data)} bytes, not {self._chunk_bytes}")
        inside, part = self._parts[offset]
        chunk = np.frombuffer(data, self._stored_dtype).reshape(self.chunks)
        target[(slice(None), *inside)] = chunk[(slice(0, len(target)), *part)]

    def _threads(self) -> ThreadPoolExecutor:
        """The inflating threads, made in the process that reads (a forked reader makes its own)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bpnet-eval-inflate")
            self._pool_pid = os.getpid()
        return self._pool

    def close(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
        self._pool, self._kept, self._buffer, self._index, self._fd = None, None, None, None, None
        self._located = False


def chunk_grid(shape: tuple, chunks: tuple) -> tuple:
    """Chunks along each axis of a dataset of ``shape`` stored in ``chunks`` (the last ones partly outside)."""
    return tuple(-(-int(n) // int(c)) for n, c in zip(shape, chunks))


class ChunkIndex:
    """Where each stored chunk of a dataset lies in its file (HDF5's chunk index, as ``chunk_iter`` lists it), kept
    as three arrays over the grid of chunks (20 bytes a chunk; the ``StoreInfo`` objects themselves took ~300 bytes
    a chunk in every process reading: 30 MB at 100k chunks of one region each, a process per ensemble member)."""

    def __init__(self, shape: tuple, chunks: tuple):
        self.chunks = np.asarray(chunks, dtype=np.int64)
        self.grid = chunk_grid(shape, chunks)
        size = math.prod(self.grid)
        self.byte_offset = np.full(size, -1, np.int64)  # -1: never written (HDF5 gives the fill value)
        self.size = np.zeros(size, np.int64)
        self.filter_mask = np.zeros(size, np.uint32)

    def add(self, infos: list) -> None:
        """Enter ``StoreInfo``s (``chunk_offset``, ``filter_mask``, ``byte_offset``, ``size``)."""
        at = self._flat(np.array([info.chunk_offset for info in infos], np.int64).reshape(len(infos), -1))
        self.byte_offset[at] = [info.byte_offset for info in infos]
        self.size[at] = [info.size for info in infos]
        self.filter_mask[at] = [info.filter_mask for info in infos]

    def _flat(self, offsets: np.ndarray) -> np.ndarray:
        """The grid positions of chunks at element ``offsets`` ``(k, ndim)``."""
        return np.ravel_multi_index(tuple((offsets // self.chunks).T), self.grid)

    def locate(self, keys: list) -> tuple:
        """``(filter masks, byte offsets, sizes)`` of the chunks at element offsets ``keys``, as lists; KeyError where
        one was never written."""
        at = self._flat(np.array(keys, np.int64).reshape(len(keys), -1))
        offsets = self.byte_offset[at]
        if (offsets < 0).any():
            raise KeyError(keys[int(np.argmax(offsets < 0))])
        return self.filter_mask[at].tolist(), offsets.tolist(), self.size[at].tolist()


def chunk_index(dataset: h5py.Dataset) -> tuple:
    """``(ChunkIndex, fd)``: where every stored chunk of ``dataset`` lies in its file (HDF5's chunk index, listed
    once) and the file opened to read them with ``pread`` from any thread at once; ``(None, None)`` where the file is
    not a plain one (a user block shifts HDF5's addresses; another driver), the listing is not available, or the grid
    has more than ``MAX_INDEXED_CHUNKS`` chunks (HDF5 reads each chunk then)."""
    handle = dataset.file
    if (handle.userblock_size != 0 or handle.driver != "sec2" or not hasattr(dataset.id, "chunk_iter")
            or dataset.chunks is None):
        return None, None
    if math.prod(chunk_grid(dataset.shape, dataset.chunks)) > MAX_INDEXED_CHUNKS:
        return None, None  # (a damaged file can claim any shape: nothing is allocated for it)
    index = ChunkIndex(dataset.shape, dataset.chunks)
    block = []

    def take(info) -> None:  # entered a block at a time: the listed objects never all exist at once
        block.append(info)
        if len(block) == INDEX_BLOCK:
            index.add(block)
            block.clear()

    try:  # h5py >= 3.8 built on HDF5 >= 1.12.3 lists the index in one pass (100k chunks: ~0.15 s)
        dataset.id.chunk_iter(take)
        if block:
            index.add(block)
        return index, os.open(handle.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (RuntimeError, OSError, NotImplementedError):
        return None, None


def plain_layout(dataset: h5py.Dataset):
    """``"contiguous"`` or ``"rows"`` where ``PlainRows`` reads ``dataset``: a plain numeric type in this machine's
    byte order, no filter, stored contiguously (space allocated) or in chunks that each hold whole rows (every axis
    but the first whole), in a plain file, not external or virtual; else None."""
    dtype = dataset.dtype
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype != dtype.newbyteorder("="):
        return None
    handle, plist = dataset.file, dataset.id.get_create_plist()
    if (handle.userblock_size != 0 or handle.driver != "sec2" or dataset.is_virtual or plist.get_nfilters()
            or plist.get_external_count() or 0 in dataset.shape):
        return None
    if dataset.chunks is None:
        return "contiguous" if dataset.id.get_offset() is not None else None
    return "rows" if tuple(dataset.chunks[1:]) == tuple(dataset.shape[1:]) else None


class PlainRows:
    """``read(i, j)``: rows ``i..j`` of a dataset ``plain_layout`` accepts, each run of rows stored in one place read
    by one ``preadv`` straight into the result (chunks of whole rows hold their rows one after another, in C order);
    a chunk never written (no address: HDF5 gives the fill value) or a file cut short is a ``ValueError`` (h5py then
    reads the rows)."""

    def __init__(self, dataset: h5py.Dataset, layout: str):
        self.shape, self.dtype = dataset.shape, dataset.dtype
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.height = self.shape[0] if layout == "contiguous" else dataset.chunks[0]
        self._addresses = None
        if layout == "contiguous":
            self._addresses = np.array([dataset.id.get_offset()], np.int64)
            self._fd = os.open(dataset.file.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        else:  # each row of chunks' address; -1 where never written (or, impossibly here, stored otherwise)
            index, self._fd = chunk_index(dataset)
            if index is not None:
                whole = (index.size == self.height * self.row_bytes) & (index.filter_mask == 0)
                self._addresses = np.where(whole, index.byte_offset, -1)  # one chunk a row of chunks
        self.usable = self._fd is not None

    def read(self, i: int, j: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        out = np.empty((j - i, *self.shape[1:]), self.dtype) if out is None else out
        view = memoryview(out.reshape(-1)).cast("B")
        for first in range(i // self.height * self.height, j, self.height):
            lo, hi = max(i, first), min(j, first + self.height)
            address = int(self._addresses[first // self.height])
            if address < 0:
                raise ValueError(f"rows {first}.. of the dataset were never written")
            part = view[(lo - i) * self.row_bytes:(hi - i) * self.row_bytes]
            if os.preadv(self._fd, [part], address + (lo - first) * self.row_bytes) != len(part):
                raise ValueError(f"the file ends inside rows {lo}..{hi} of the dataset")
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def rows_reader(dataset: h5py.Dataset) -> Callable[..., np.ndarray]:
    """``read(i, j, out=None)``: rows ``i..j`` of ``dataset`` (into ``out`` where given: a C-contiguous
    ``(j - i, *shape[1:])`` array of the dataset's type in native byte order, filled by ``ChunkRows`` or
    ``PlainRows`` without a copy), by ``ChunkRows`` or ``PlainRows`` where they read them, else (and where they fail)
    by h5py; ``read.close()`` stops its threads and closes its file; ``read.direct``: chunks are inflated here
    (``ChunkRows``)."""
    filters, layout = chunk_filters(dataset), plain_layout(dataset)
    if filters:  # (a plain layout has no filter: at most one of the two applies)
        opened = ChunkRows(dataset, filters, min(MAX_INFLATE_THREADS, allotted_cpus()))
    else:
        opened = PlainRows(dataset, layout) if layout is not None else None
    direct = opened if opened is not None and getattr(opened, "usable", True) else None

    def read(i: int, j: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        if direct is not None and j > i:
            try:
                if out is None or out.flags.c_contiguous:
                    return direct.read(i, j, out)
                out[...] = direct.read(i, j)
                return out
            except _READ_FAILURES:  # (a row of chunks that failed is not kept: ``read`` marks it only once decoded)
                pass
        if out is None:
            return dataset[i:j]
        out[...] = dataset[i:j]
        return out

    read.close = opened.close if opened is not None else (lambda: None)
    read.direct = isinstance(direct, ChunkRows)
    read.plain = isinstance(direct, PlainRows)
    return read
