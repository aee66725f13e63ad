"""Fast base-resolution reader for bigWig files (numpy + an inflate library, nothing compiled at run time).

``BigWigReader.read`` returns, for a whole batch of equal-width windows at once,
exactly what pyBigWig's ``bw.values(chrom, start, end, numpy=True)`` returns for
each window, with uncovered bases (NaN, and stored NaN values) as 0.

How:

* the header, chromosome B+ tree and R-tree index are read when the file is
  opened (little- or big-endian; compressed or not);
* intervals are kept as int64 keys ``chrom_id << 32 | position``, so windows on
  any number of chromosomes are located with one ``searchsorted``;
* a clean file (intervals sorted, non-empty and non-overlapping, as bedGraphToBigWig
  and pyBigWig write them) is decoded whole and kept, in at most 128 MB
  (``_RESIDENT_MAX_BYTES``; it then replaces the block cache): on the first
  ``read`` if it has at most 8 MB of compressed data, otherwise once reads have decoded
  a quarter of its blocks, or at the first read where the windows to come (``expect``) touch a
  quarter of them and a sample of its blocks says it fits; a run shares its bigWigs' memory (512 MB by default)
  equally among them (``share_run_memory``), so that it does not grow with the number of tracks. It is kept as
  intervals (a window's are found with a two-level ``searchsorted`` and written with one ``np.repeat`` of values
  and gaps; those holding 0, stored or NaN, are left out, as they read as uncovered bases do) or, where that is
  smaller (a value on every base, e.g. fixedStep span 1: decoded straight into it where the blocks sampled say so),
  as one value per base of the genome, from which
  windows are copied as rows of a strided view. A file of blocks of one value a base (fixedStep, step and span 1)
  is decoded whole 256 blocks a read, their values joined 1 MB at a time into one array (``_base_step_values``),
  then its nonzero bases found at once, or its runs of blocks copied as slices (``_base_step_parts``; 2-2.5x block
  by block). Each array is kept in the narrowest dtype that holds
  it exactly: 7-8 bytes an interval for read counts on a genome under 4 Gb (uint32 genome positions,
  uint16 lengths, whole-number values in the first of uint8, int8, uint16, int16 holding their span),
  16 at most; one byte a base for counts up to 255 (the header's summary gives the span);
* other files, and files too big to keep, are read block by block: the blocks a batch touches are read
  and decompressed once each (ISA-L's inflate through ``isal``, 1.5-3.5x zlib's,
  or zlib where ``isal`` is not installed; the same bytes either way) however many windows share them,
  and kept in a 32 MB LRU cache because consecutive batches often hit the same
  blocks (16 bytes per interval); big calls are filled in genome order, 8192
  windows at a time; where a batch's blocks are clean and follow each other, their
  intervals are filled as those of a file kept whole; where they each hold one fixed step of one value a base
  (step and span 1: predicted bigWigs, dense tracks written by pyBigWig) and none overlaps another, windows are
  copied straight from the inflated blocks joined into one array, without decoding or caching blocks one by one
  (``_fill_base_steps``: a predicted bigWig of a block a window read 2x as fast), and the blocks of a file whose
  first block decoded is fixed-step are inflated by libdeflate within the header's largest block size (1.1-1.8x
  ISA-L there; ISA-L stays faster on bedGraph blocks);
* bedGraph / variableStep / fixedStep sections are decoded with ``frombuffer``
  and intervals are scattered into the ``(n, W)`` output with vectorised index
  arithmetic, so the cost is close to the number of covered bases.

What is kept in memory, and how windows are copied out of it, is ``sources/intervals.py``; this module reads
the file and decides what to keep.

Like libBigWig (pyBigWig) and the UCSC reader, only the first section of each
data block is decoded, and where stored intervals overlap, the one stored later
wins.

Nothing is written anywhere and nothing is compiled at run time. Reads use
``os.pread`` on one read-only descriptor, so a reader can be shared by threads
and survives ``fork``; it also pickles (by path: the copy reopens the file), so
it can be handed to spawned worker processes.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np

from bpnet_eval.environment import allotted_cpus, fork_is_safe
from bpnet_eval.errors import BpnetEvalError, InputError
from bpnet_eval.input_files import UNEXPECTED_READ_ERRORS, error_reason, open_regular_fd, read_runs, reading
from bpnet_eval.process import trim_heap
from bpnet_eval.sources.deflate import INFLATE_ERRORS, inflate, inflate_within
from bpnet_eval.sources.intervals import (Block, DenseGenome, IntervalSet, SparseGenome, WindowedDense, clean_blocks,
                                          copy_windows, covered, expand_ranges, folded_narrow, genome_keys, holds,
                                          in_genome_order, interval_bytes, is_clean, joined_narrow, merged_ranges,
                                          narrow_intervals, overlapping, row_span, spans_filled, value_dtype)

__all__ = ["BigWigReader", "share_run_memory"]

_BIGWIG_MAGIC = 0x888FFC26
_BIGBED_MAGIC = 0x8789F2EB
_CHROM_TREE_MAGIC = 0x78CA8C91
_RTREE_MAGIC = 0x2468ACE0

_HEADER_SIZE = 64
_SECTION_HEADER_SIZE = 24
_RTREE_HEADER_SIZE = 48
# Decoded blocks kept between read() calls (files read block by block): two or three batches' blocks of a track with
# a value on every base, enough for consecutive batches (128 MB read no faster on any shape measured, and took 120-140
# MB more a file: the 1M-window tiling case's run 589 -> 471 MB, densefloat's 517 -> 376 MB).
_CACHE_BYTES = 32 << 20
_RESIDENT_COMPRESSED_BYTES = 8 << 20  # files with at most this much block data are decoded whole on first read,
_RESIDENT_AFTER_SHARE = 0.25  # bigger ones once reads have decoded this share of their blocks,
_RESIDENT_MAX_BYTES = 128 << 20  # if whole they take at most this (it replaces the block cache)
_STREAM_WINDOWS = 8192  # windows filled per step from a big file (bounds decoded blocks held)
_NARROW_EVERY = 256  # parts of a file kept whole whose dtypes are found at once (``folded_narrow``)
_ESTIMATE_BLOCKS, _ESTIMATE_STRIDE = 256, 16  # decoded blocks sampled for the estimate of the file kept whole
_READ_GROUP, _READ_SPAN_BYTES = 256, 4 << 20  # blocks to decode read ahead together, by one pread per run of them
_GROUP_INTERVALS = 1 << 15  # intervals of bedGraph/variableStep blocks checked and filtered together (file decoded whole)
_INFLATE_BESIDE_MIN = 8  # blocks inflated by a second thread when read together: at least twice as many (``_inflated``)
_INFLATE_CPUS = allotted_cpus()
_UNREAD = object()  # (``BigWigReader._decode_block``: no section given)
_NARROW_GENOME = (1 << 32) - (1 << 16)  # genome positions (and a narrow interval's end) fit uint32 below this
_CACHED_BYTES_PER_INTERVAL = 16  # three uint32 positions + one float32 value
# Blocks of one value a base (``_fill_base_steps``) read and inflated together: at most this many bytes inflated (as
# the header's largest block says), and joined into one array at most this many (an array above glibc's mmap threshold
# of 8 MB, ``process.return_batch_memory``, is faulted in afresh each time: +1 s of system time on the densefloat case)
_BASE_STEP_READ_BYTES, _BASE_STEP_JOIN_BYTES = 32 << 20, 4 << 20
_WHOLE_JOIN_BYTES = 1 << 20  # joined at a time where a file is decoded whole (``_read_groups``: its temporaries, 4x as
                             # many bytes, add to the peak of a process holding the whole file; no slower than 4 MB)
_FIT_SAMPLE_BLOCKS = 16  # blocks decoded, evenly spaced, to tell whether a file decoded whole fits (``expect``)

_SMALLEST_FLOAT32 = float(np.finfo(np.float32).smallest_subnormal)  # no stored value lies in (0, this)
_FIX = "check the path, or re-create it with bedGraphToBigWig or pyBigWig"


def _inflated(stored: list, within: int = 0) -> list:
    """Each of the zlib streams ``stored`` inflated (None where one does not decompress); where there are many and a
    second CPU, the second half by a thread beside this one (ISA-L, libdeflate and zlib give up Python's lock while
    they inflate: a reading process inflates two blocks at once, and no thread outlives the call). ``within``: the
    inflated size of most streams is at most this (``inflate_within``), else unknown (0)."""
    def inflate_into(part: list, out: list) -> None:
        for raw in part:
            try:
                out.append(inflate_within(raw, within) if within else inflate(raw))
            except INFLATE_ERRORS:
                out.append(None)

    first, second, raised, half = [], [], [], len(stored) // 2
    if half < _INFLATE_BESIDE_MIN or _INFLATE_CPUS < 2:
        inflate_into(stored, first)
        return first

    def inflate_second_half() -> None:
        try:
            inflate_into(stored[half:], second)
        except BaseException as err:  # (out of memory): raised here, by the caller's thread
            raised.append(err)

    beside = threading.Thread(target=inflate_second_half, name="bpnet-eval-inflate")
    beside.start()
    try:
        inflate_into(stored[:half], first)
    finally:
        beside.join()
    if raised:
        raise raised[0]
    return first + second


def _bad_file(path: str, why: str) -> InputError:
    return InputError(f"{path}: not a readable bigWig file ({why}); {_FIX}")


def share_run_memory(readers: Sequence["BigWigReader"], nbytes: int) -> None:
    """Give each of a run's bigWig ``readers`` (observed and predicted tracks, every ensemble member's) an equal
    share of ``nbytes`` to keep (``BigWigReader.keep_at_most``; at most what a file alone keeps), so that a run's
    memory does not grow with its tracks (by default 512 MB: up to four files keep what one alone would)."""
    for reader in readers:
        reader.keep_at_most(nbytes // len(readers))


class DecodedBeside:
    """Files decoded whole by processes forked beside the process that reads them, into shared memory (memfds),
    while that process decodes others.

    Of ``readers`` (``{track: BigWigReader}``, in track order) whose next read decodes the file whole
    (``BigWigReader.decodes_whole_next``), the first of every ``cpus`` is decoded by the reading process itself at
    its first read, and each other one by a process of its own (``fork(call, what)``: ``workers.ForkedCall``), at
    most ``cpus - 1`` at once: the next one's process is forked when a file is taken (``adopt``), where forking is
    still safe. So every CPU decodes its share of the files before the first batch, however many files there are
    (8 tracks on 2 CPUs: 4 files here, 4 beside, not 1 beside and 7 here one after another). Nothing is decoded
    beside without ``fork``, memfds or a second CPU: every file is then decoded by its first read.

    ``s in decoded`` for a file decoded (or to be decoded) beside: its first read calls ``adopt(s, reader)``.
    ``stop()`` stops the processes of the files not taken.
    """

    def __init__(self, readers: dict, fork=None, cpus: int = 1):
        self._readers, self._fork, self._at_once = readers, fork, cpus - 1
        self._running = {}  # track → (its process, its memfd)
        wanted = [s for s, reader in readers.items() if reader.decodes_whole_next()]
        beside = fork is not None and len(wanted) > 1 and cpus > 1 and hasattr(os, "memfd_create")
        self._queued = [s for p, s in enumerate(wanted) if p % cpus] if beside else []
        self._start_queued()

    def __contains__(self, s: int) -> bool:
        return s in self._running or s in self._queued

    def __bool__(self) -> bool:
        return bool(self._running or self._queued)

    def running(self) -> dict:
        """``{track: (process, memfd)}`` of the files being decoded beside now."""
        return dict(self._running)

    def _start_queued(self) -> None:
        """Fork a process for each queued file while fewer than ``cpus - 1`` run (none once forking is not safe, a
        memfd or a fork fails: those files are decoded by their reads)."""
        while self._queued and len(self._running) < self._at_once:
            if not fork_is_safe():
                self._queued.clear()
                return
            s = self._queued.pop(0)
            try:
                fd = os.memfd_create(f"bpnet-eval-track{s}", getattr(os, "MFD_CLOEXEC", 0))
            except OSError:
                self._queued.clear()
                return
            reader = self._readers[s]
            try:
                call = self._fork(lambda reader=reader, fd=fd: reader.decode_whole_into(fd), f"decoding {reader.path}")
            except OSError:
                os.close(fd)
                self._queued.clear()
                return
            self._running[s] = (call, fd)

    def adopt(self, s: int, reader: "BigWigReader") -> None:
        """File ``s`` decoded by its process: waited for and kept by ``reader`` (as shared memory); where that process
        failed, or was not started yet (``s`` still queued), nothing (the read decodes the file, and reports what is
        wrong with it). Then the next queued file's process starts."""
        if s in self._queued:
            self._queued.remove(s)
            return
        call, fd = self._running.pop(s)
        try:
            reader.adopt_whole(call.result(), fd)
        except (BpnetEvalError, OSError, ValueError):
            pass
        finally:
            call.close()
            os.close(fd)
        self._start_queued()

    def stop(self) -> None:
        """Stop the processes of the files not taken; none is started after this."""
        self._queued.clear()
        for call, fd in self._running.values():
            call.close()
            os.close(fd)
        self._running.clear()



class BigWigReader:
    """Read equal-width windows of base-resolution values from one bigWig file.

    One reader holds one read-only file descriptor. Use it as a context manager
    or call :meth:`close`. Pickling keeps only the path; unpickling reopens it.
    """

    path: str
    chrom_sizes: dict[str, int]

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._fd = -1
        self._lock = threading.Lock()
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = 0
        self._resident: DenseGenome | SparseGenome | None = None
        try:  # a regular file only, opened without blocking: a named pipe is refused, never waited on
            self._fd = open_regular_fd(self.path, "bigWig file")
        except OSError as err:
            raise InputError(f"{self.path}: cannot open bigWig file ({err.strerror}); check the path and its read permission") from None
        try:
            self._file_size = os.fstat(self._fd).st_size
            self._parse_header()
            self._parse_chrom_tree()
            self._parse_index()
        except InputError:
            self.close()
            raise
        except (struct.error, ValueError, IndexError, OverflowError, MemoryError, RecursionError) as err:
            self.close()
            raise _bad_file(self.path, f"corrupt or truncated: {type(err).__name__}") from None
        except UNEXPECTED_READ_ERRORS as err:  # an I/O error, or anything else the file provoked
            self.close()
            raise _bad_file(self.path, error_reason(err)) from None

    # ----------------------------------------------------------------- opening
    def _pread(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self._file_size:
            raise _bad_file(self.path, f"truncated: needs bytes {offset}-{offset + size}, file has {self._file_size}")
        data = os.pread(self._fd, size, offset)  # (all of it at once, but for a short read)
        while len(data) < size:
            piece = os.pread(self._fd, size - len(data), offset + len(data))
            if not piece:
                raise _bad_file(self.path, "truncated while reading")
            data += piece
        return data

    def _parse_header(self) -> None:
        if self._file_size < _HEADER_SIZE:
            raise _bad_file(self.path, f"only {self._file_size} bytes")
        raw = self._pread(0, _HEADER_SIZE)
        (magic,) = struct.unpack_from("<I", raw)
        if magic == _BIGWIG_MAGIC:
            self._endian = "<"
        elif magic == struct.unpack("<I", struct.pack(">I", _BIGWIG_MAGIC))[0]:
            self._endian = ">"
        elif magic in (_BIGBED_MAGIC, struct.unpack("<I", struct.pack(">I", _BIGBED_MAGIC))[0]):
            raise InputError(f"{self.path}: is a bigBed file, not a bigWig; give the bigWig of base-resolution counts instead")
        else:
            raise _bad_file(self.path, "wrong magic number")
        e = self._endian
        (_, self._version, _, self._chrom_tree_offset, _, self._index_offset, _, _, _, self._summary_offset,
         self._uncompress_buf_size, _) = struct.unpack(e + "IHHQQQHHQQIQ", raw)
        # a data section's header: chrom, start, end, step, span, type, reserved, item count
        self._section = struct.Struct(e + "IIIIIBBH")
        self._section_dtype = np.dtype([("chrom", e + "u4"), ("start", e + "u4"), ("end", e + "u4"), ("step", e + "u4"),
                                        ("span", e + "u4"), ("type", "u1"), ("reserved", "u1"), ("count", e + "u2")])
        self._item_dtypes = {
            1: np.dtype([("start", e + "u4"), ("end", e + "u4"), ("value", e + "f4")]),
            2: np.dtype([("start", e + "u4"), ("value", e + "f4")]),
            3: np.dtype([("value", e + "f4")]),
        }

    def _tree_leaves(self, root: int, leaf: np.dtype, branch: np.dtype, what: str) -> np.ndarray:
        """Items of all leaf nodes of a B+ or R tree, depth first, children in stored order."""
        leaves, stack, seen = [], [root], set()
        while stack:
            node = stack.pop()
            if node in seen:
                raise _bad_file(self.path, f"{what} is damaged")
            seen.add(node)
            is_leaf, _, count = struct.unpack(self._endian + "BBH", self._pread(node, 4))
            dtype = leaf if is_leaf else branch
            items = np.frombuffer(self._pread(node + 4, count * dtype.itemsize), dtype=dtype)
            if is_leaf:
                leaves.append(items)
            else:
                stack.extend(reversed(items["child"].tolist()))
        return np.concatenate(leaves) if leaves else np.zeros(0, dtype=leaf)

    def _parse_chrom_tree(self) -> None:
        e = self._endian
        magic, _, key_size, _, _, _ = struct.unpack(e + "IIIIQQ", self._pread(self._chrom_tree_offset, 32))
        if magic != _CHROM_TREE_MAGIC:
            raise _bad_file(self.path, "chromosome index is damaged")
        leaf = np.dtype([("key", f"S{key_size}"), ("id", e + "u4"), ("size", e + "u4")])
        branch = np.dtype([("key", f"S{key_size}"), ("child", e + "u8")])
        names: dict[int, str] = {}
        sizes: dict[int, int] = {}
        for key, chrom_id, size in self._tree_leaves(self._chrom_tree_offset + 32, leaf, branch,
                                                     "chromosome index").tolist():
            names[chrom_id] = key.rstrip(b"\0").decode("utf-8", "replace")
            sizes[chrom_id] = size
        order = sorted(names)
        self.chrom_sizes: dict[str, int] = {names[i]: sizes[i] for i in order}
        self._chrom_ids = {names[i]: i for i in order}
        self._size_by_id = np.zeros(max(order, default=-1) + 1, dtype=np.int64)
        self._size_by_id[order] = [sizes[i] for i in order]

    def _parse_index(self) -> None:
        e = self._endian
        magic, _, _ = struct.unpack(e + "IIQ", self._pread(self._index_offset, 16))
        if magic != _RTREE_MAGIC:
            raise _bad_file(self.path, "data index is damaged")
        bounds = [("start_chrom", e + "u4"), ("start_base", e + "u4"), ("end_chrom", e + "u4"), ("end_base", e + "u4")]
        leaf = np.dtype(bounds + [("offset", e + "u8"), ("size", e + "u8")])
        branch = np.dtype(bounds + [("child", e + "u8")])
        root = self._index_offset + _RTREE_HEADER_SIZE
        # the tree itself, not the header's item count, says what is stored (as libBigWig reads it)
        blocks = self._tree_leaves(root, leaf, branch, "data index")
        start = genome_keys(blocks["start_chrom"], blocks["start_base"])
        order = np.argsort(start, kind="stable")
        # Blocks sorted by start key; _block_rank is the stored (priority) order.
        self._block_rank = order
        self._block_start = start[order]
        self._block_end = genome_keys(blocks["end_chrom"], blocks["end_base"])[order]
        self._block_end_max = np.maximum.accumulate(self._block_end)
        self._block_offset = blocks["offset"][order].astype(np.int64)
        self._block_size = blocks["size"][order].astype(np.int64)
        ends = self._block_offset + self._block_size
        self._resident_ok = True  # until decoding it whole showed the file is not clean or too big
        self._base_steps = True  # until blocks read were found not all of one value a base (``_fill_base_steps``,
        # ``_read_groups``)
        # whether the first block decoded is a fixed-step section: the blocks are then inflated as blocks of floats
        # (``_stored_blocks``; libdeflate is slower than ISA-L on bedGraph blocks, 71 vs 50 us on the chip case's, and
        # faster on fixed-step ones, 9 vs 16 us on the fixedstep case's)
        self._fixed_steps = None
        small = int(self._block_size.sum()) <= _RESIDENT_COMPRESSED_BYTES
        self._resident_due = 0 if small else max(1, int(np.ceil(_RESIDENT_AFTER_SHARE * len(order))))
        self._resident_due_at_open = self._resident_due  # (``forget_windows``)
        self._seen = np.zeros(len(order), dtype=bool)  # blocks decoded at least once
        self._seen_blocks = 0
        # the nonzero intervals of the blocks sampled from those decoded (the first ``_ESTIMATE_BLOCKS``, then every
        # ``_ESTIMATE_STRIDE``-th): what the file kept whole would hold, estimated
        self._sampled_blocks = self._seen_intervals = 0
        # whether the file's intervals may be kept narrow (``SparseGenome.interval_dtypes``): its genome is small
        # enough for uint32 positions; the clean blocks decoded so far have short intervals and whole-number values
        self._narrow_keys = int(self._size_by_id.sum()) < _NARROW_GENOME
        self._seen_narrow = (True, (0.0, 0.0))  # (``narrow_intervals``)
        self._summary_bounds = False  # ``value_range``, once read (``_base_dtype``)
        self._share = None  # the bytes this file may keep as its share of a run's (``share_run_memory``)
        # A file too big to keep whole is kept where the run's windows lie (``expect``): the windows merged into
        # key ranges, and the blocks they touch.
        self._windows = self._window_blocks = None
        self._windows_dense = False  # kept there as one value per base (``WindowedDense``), not as intervals
        if len(ends) and int(ends.max()) > self._file_size:
            raise _bad_file(self.path, f"truncated: data runs to byte {int(ends.max())}, file has {self._file_size}")

    def value_range(self):
        """``(smallest, largest)`` value stored in the file, from the header's whole-file summary (written by
        bedGraphToBigWig, pyBigWig and libBigWig since bigWig version 2), or None when there is none."""
        if self._version < 2 or not self._summary_offset:
            return None
        count, low, high = struct.unpack(self._endian + "Qdd", self._pread(self._summary_offset, 24))
        return (low, high) if count else None

    def stored_as_negative(self) -> bool:
        """Whether every stored value is <= 0 and some are < 0 (a minus strand written as negative values).

        Values are float32, so a largest value below float32's smallest positive number means none is > 0
        (libBigWig, hence pyBigWig, starts the summary's maximum at DBL_MIN = 2.2e-308, not at -inf)."""
        bounds = self.value_range()
        return bounds is not None and bounds[1] < _SMALLEST_FLOAT32 and bounds[0] < 0

    # ------------------------------------------------------------------ blocks
    def _stored_blocks(self, blocks: list, floats: bool = False) -> dict:
        """``{block: data section bytes}`` of ``blocks``, read by one ``pread`` per run of blocks stored one after
        another in the file (up to ``_READ_SPAN_BYTES``: one call, and one release of Python's lock, for many blocks),
        and inflated (``_inflated``) where the file is compressed; None for a block that does not decompress.
        ``floats``: blocks expected to hold one float a base, inflated within the header's largest block size."""
        by_offset = sorted(blocks, key=lambda block: self._block_offset[block])
        offsets, sizes = self._block_offset[by_offset].tolist(), self._block_size[by_offset].tolist()
        stored = read_runs(self._pread, offsets, sizes, _READ_SPAN_BYTES)
        if self._uncompress_buf_size:
            stored = _inflated(stored, self._uncompress_buf_size if floats else 0)
        return dict(zip(by_offset, stored))

    def _next_stored(self, blocks: list, at: int) -> dict:
        """``_stored_blocks`` of the next ``_READ_GROUP`` blocks of ``blocks`` from index ``at`` not in the cache."""
        group = []
        for block in blocks[at:]:
            if block not in self._cache:
                group.append(block)
                if len(group) == _READ_GROUP:
                    break
        return self._stored_blocks(group, floats=bool(self._fixed_steps))

    def _decode_block(self, block: int, data=_UNREAD, check: bool = True):
        """Intervals of one data block: (chromosome key, uint32 starts, uint32 ends, float32 values, clean), the arrays
        read-only, strided views into the block's bytes where the file's byte order is this machine's; ``clean``:
        whether the intervals are sorted, non-empty and none overlapping (from the header of a fixed-step block, else
        ``is_clean`` where ``check``, else None). ``data``: its section as ``_stored_blocks`` gave it (read here if not
        given)."""
        if data is _UNREAD:
            data = self._stored_blocks([block])[block]
        if data is None:
            raise _bad_file(self.path, f"data block at byte {int(self._block_offset[block])} does not decompress")
        if len(data) < _SECTION_HEADER_SIZE:
            raise _bad_file(self.path, f"data block at byte {int(self._block_offset[block])} is too short")
        chrom, first, _, step, span, kind, _, count = self._section.unpack_from(data)
        if self._fixed_steps is None:
            self._fixed_steps = kind == 3
        item = self._item_dtypes.get(kind)
        if item is None or len(data) < _SECTION_HEADER_SIZE + count * item.itemsize:
            raise _bad_file(self.path, f"data block at byte {int(self._block_offset[block])} is damaged")
        items = np.frombuffer(data, dtype=item, count=count, offset=_SECTION_HEADER_SIZE)
        # uint32 arithmetic wraps exactly like libBigWig's
        clean = None
        if kind == 1:
            start, end = items["start"].astype(np.uint32, copy=False), items["end"].astype(np.uint32, copy=False)
        elif kind == 2:
            start = items["start"].astype(np.uint32, copy=False)
            end = start + np.uint32(span)
        else:
            last = first + max(count - 1, 0) * step
            if count and step and last <= 0xFFFFFFFF:  # (the same numbers, made at once)
                start = np.arange(first, last + 1, step, dtype=np.uint32)
            else:
                start = np.uint32(first) + np.arange(count, dtype=np.uint32) * np.uint32(step)
            end = start + np.uint32(span)
            # fixed steps: sorted, non-empty, none overlapping where each step covers the span, none wrapping past 2**32
            clean = count == 0 or (span > 0 and (count < 2 or step >= span) and last + span <= 0xFFFFFFFF)
        if clean is None and check:
            clean = is_clean(start, end)
        values = items["value"].astype(np.float32, copy=False)
        if count and np.isnan(np.minimum.reduce(values)):  # (a NaN is the minimum)
            missing = np.isnan(values)
            values = np.where(missing, np.float32(0.0), values)
        return chrom << 32, start, end, values, clean

    def _blocks(self, needed: np.ndarray, stored: Optional[dict] = None):
        """Decoded intervals of the given blocks, from the cache where possible (``stored``: blocks' bytes already read,
        ``_stored_blocks``)."""
        out, stored, fresh = [], {} if stored is None else stored, {}
        with self._lock:
            cache = self._cache
            needed = needed.tolist()
            for at, block in enumerate(needed):
                hit = cache.get(block)
                if hit is None:
                    if block not in stored:  # this block and the next ones to decode, read together
                        stored = self._next_stored(needed, at)
                    hit = Block(*self._decode_block(block, stored.pop(block)))
                    if not self._seen[block]:
                        fresh[block] = hit
                    cache[block] = hit
                    self._cache_size += len(hit.start) * _CACHED_BYTES_PER_INTERVAL
                else:
                    cache.move_to_end(block)
                out.append(hit)
            if fresh:
                self._note_seen(np.fromiter(fresh, dtype=np.int64, count=len(fresh)), fresh.__getitem__)
            while self._cache_size > self._kept_limit(_CACHE_BYTES) and len(cache) > len(out):
                _, old = cache.popitem(last=False)
                self._cache_size -= len(old.start) * _CACHED_BYTES_PER_INTERVAL
        return out

    def _note_seen(self, new: np.ndarray, decoded) -> None:
        """Count blocks decoded for the first time (``new``, in stored order, none seen before) in ``_seen``, and those
        that fall to be sampled (the first ``_ESTIMATE_BLOCKS``, then every ``_ESTIMATE_STRIDE``-th) in the estimate
        (``decoded(block)``: its ``Block``, asked for those only)."""
        rank = self._seen_blocks + np.arange(1, len(new) + 1)
        self._seen[new] = True
        self._seen_blocks += len(new)
        for block in new[(rank <= _ESTIMATE_BLOCKS) | (rank % _ESTIMATE_STRIDE == 0)].tolist():
            self._sample(decoded(block))

    def _sample(self, block: "Block") -> None:
        """Count a decoded block in the estimate of what the file kept whole takes: its intervals less its zeros, and
        the dtypes they need (``narrow_intervals``)."""
        self._sampled_blocks += 1
        if not block.clean:
            self._seen_intervals += len(block.start)
            return
        self._seen_intervals += int(np.count_nonzero(block.value.view(np.uint32)))
        if self._seen_narrow[0] or self._seen_narrow[1] is not None:
            self._seen_narrow = joined_narrow(self._seen_narrow, narrow_intervals(block.start, block.end, block.value))

    # -------------------------------------------------------------------- read
    def chrom_ids(self, chroms: Sequence[str]) -> np.ndarray:
        """This file's number of each chromosome name, -1 where it has no such chromosome (``read`` takes either)."""
        ids = self._chrom_ids
        return np.fromiter((ids.get(c, -1) for c in chroms), dtype=np.int64, count=len(chroms))

    def _window_keys(self, chroms: Sequence[str], starts, ends):
        if self._fd < 0:
            raise ValueError(f"BigWigReader for {self.path} is closed")
        starts = np.asarray(starts)
        ends = np.asarray(ends)
        n = len(chroms)
        if starts.shape != (n,) or ends.shape != (n,):
            raise InputError(f"{self.path}: got {n} chromosome names but starts/ends of shape {starts.shape}/{ends.shape}; pass one name, start and end per window")
        starts = starts.astype(np.int64)
        ends = ends.astype(np.int64)
        if isinstance(chroms, np.ndarray) and chroms.dtype.kind in "iu":  # numbers from chrom_ids, every one known
            chrom_id = chroms.astype(np.int64)
            if n and not 0 <= chrom_id.min() <= chrom_id.max() < len(self._size_by_id):
                raise ValueError(f"chromosome numbers outside those of {self.path}")
        else:
            chrom_id = self.chrom_ids(chroms)
        ids = self._chrom_ids
        if n and chrom_id.min() < 0:
            bad = chroms[int(np.argmin(chrom_id))]
            some = ", ".join(list(ids)[:3])
            raise InputError(f"{self.path}: chromosome {bad!r} is not in this bigWig (it has {len(ids)}: {some}, ...); use regions on the same genome build as the bigWig")
        width = int(ends[0] - starts[0]) if n else 0
        if n and (np.any(ends - starts != width) or width <= 0):
            raise InputError(f"{self.path}: windows must all have the same positive width (got widths {int((ends - starts).min())}..{int((ends - starts).max())}); resize the regions to one width")
        outside = (starts < 0) | (ends > self._size_by_id[chrom_id])
        if outside.any():
            i = int(np.argmax(outside))
            name = next(name for name, k in ids.items() if k == chrom_id[i])
            raise InputError(f"{self.path}: window {name}:{starts[i]}-{ends[i]} lies outside the chromosome (length {self.chrom_sizes[name]}); drop or shift regions that run off the chromosome ends")
        return genome_keys(chrom_id, starts), width

    def read(self, chroms: Sequence[str], starts: np.ndarray, ends: np.ndarray,
             out: np.ndarray | None = None) -> np.ndarray:
        """Base-resolution values of equal-width windows, shape (n, W) float32, uncovered bases (NaN) as 0; written into
        ``out`` where given (each row contiguous, rows any distance apart: a track's rows of a batch of tracks)."""
        key0, width = self._window_keys(chroms, starts, ends)
        n, zeroed = len(key0), out is None
        if out is None:
            out = np.zeros((n, width), dtype=np.float32)
        elif out.shape != (n, width) or out.dtype != np.float32:
            raise ValueError(f"out must be a float32 array of shape {(n, width)}")
        elif n and width:
            row_span(out, width)  # (each row contiguous, or a ValueError)
        if n == 0 or len(self._block_start) == 0:
            if not zeroed:
                out[...] = 0.0
            return out
        with reading(self.path, "the bigWig's data", _FIX):  # an I/O error or a damaged block: name the file
            resident = self._resident_genome(key0, width)
            if resident is not None and (self._windows is None or covered(self._windows, key0, width)):
                resident.fill(key0, width, out)  # (every value)
            elif n <= _STREAM_WINDOWS:  # into rows back to back: out's own, or a zeroed copy's
                target = out if out.flags.c_contiguous else np.zeros((n, width), dtype=np.float32)
                if target is out and not zeroed:
                    out[...] = 0.0
                self._read_blocks(key0, width, target.reshape(-1))
                if target is not out:
                    out[...] = target
            else:  # many windows: in genome order, a bounded number of decoded blocks at a time
                order = np.argsort(key0, kind="stable")
                for i in range(0, n, _STREAM_WINDOWS):
                    rows = order[i:i + _STREAM_WINDOWS]
                    part = np.zeros((len(rows), width), dtype=np.float32)
                    self._read_blocks(key0[rows], width, part.reshape(-1))
                    out[rows] = part
        return out

    def read_clipped(self, chrom: str, start: int, end: int) -> np.ndarray:
        """One window ``(end - start,)`` float32, zeros where it lies past either end of ``chrom`` (all zeros
        when the file has no ``chrom``)."""
        values = np.zeros(end - start, dtype=np.float32)
        lo, hi = max(start, 0), min(end, self.chrom_sizes.get(chrom, 0))
        if hi > lo:
            values[lo - start:hi - start] = self.read([chrom], np.array([lo]), np.array([hi]))[0]
        return values

    def _read_blocks(self, key0: np.ndarray, width: int, flat: np.ndarray) -> None:
        """Fill windows from the blocks they touch: straight from blocks of one value a base where they hold them
        (``_fill_base_steps``), the others decoded block by block (``_fill_decoded``)."""
        touched = self._touched(key0, width)
        if len(touched[0]) == 0:
            return
        if not self._base_steps or self._fixed_steps is False:  # (found not so, or a first block of another kind)
            self._fill_decoded(key0, width, flat, touched)
            return
        rest, stored = self._fill_base_steps(key0, width, flat.reshape(len(key0), width), np.unique(touched[0]))
        if len(rest) == len(key0):
            self._fill_decoded(key0, width, flat, touched, stored)
        elif len(rest):
            part = np.zeros((len(rest), width), dtype=np.float32)
            self._fill_decoded(key0[rest], width, part.reshape(-1), self._touched(key0[rest], width), stored)
            flat.reshape(len(key0), width)[rest] = part

    def _fill_base_steps(self, key0: np.ndarray, width: int, out: np.ndarray, needed: np.ndarray):
        """Where the blocks that windows touch each hold one fixed step of one value a base (step and span 1: a
        predicted bigWig, a dense track written by pyBigWig) and none overlaps another, copy each window that lies in
        one block, or in blocks that follow each other without a gap, straight from the blocks' inflated bytes: no
        block is decoded on its own or cached (each window of such a file is mostly read once). Blocks are read
        ``_BASE_STEP_READ_BYTES`` at a time and joined ``_BASE_STEP_JOIN_BYTES`` at a time (``_joined_parts``), in
        genome order. Returns ``(rest, stored)``: the windows left to fill from decoded blocks, and the bytes of the
        last blocks read where they were not of that kind (then every window, and ``_base_steps`` is False: the file
        is read block by block from then on)."""
        largest = self._uncompress_buf_size or int(self._block_size[needed].max())
        waiting, reached = np.ones(len(key0), dtype=bool), -1
        for blocks in np.array_split(needed, min(len(needed), -(-len(needed) * largest // _BASE_STEP_READ_BYTES))):
            stored = self._stored_blocks(blocks.tolist(), floats=True)
            for part in self._joined_parts(blocks, stored):
                steps = self._base_step_values(part, stored)
                if steps is None or steps[1][0] < reached:  # all windows from decoded blocks, as if never copied here
                    self._base_steps = False
                    out[...] = 0.0
                    return np.arange(len(key0)), stored
                values, low, high, first, run = steps
                reached = high[-1]
                todo = np.flatnonzero(waiting)
                start, end = key0[todo], key0[todo] + width
                k = np.maximum(np.searchsorted(low, start, side="right") - 1, 0)  # the block of a window's first base
                last = np.maximum(np.searchsorted(low, end, side="left") - 1, 0)  # and of its last
                inside = (low[k] <= start) & (end <= high[last]) & (run[k] == run[last])  # (a run's values follow on)
                rows, k = todo[inside], k[inside]
                if len(rows) == len(key0):
                    copy_windows(values, first[k] + (key0 - low[k]), width, out)
                elif len(rows):
                    part = np.empty((len(rows), width), dtype=np.float32)
                    copy_windows(values, first[k] + (key0[rows] - low[k]), width, part)
                    out[rows] = part
                waiting[rows] = False
        rest = np.flatnonzero(waiting)
        if len(rest) < len(key0) and np.isnan(np.minimum.reduce(out, axis=None)):  # stored NaN: read as 0
            np.copyto(out, np.float32(0.0), where=np.isnan(out))
        return rest, None

    @staticmethod
    def _joined_parts(blocks: np.ndarray, stored: dict, limit: int = 0) -> list:
        """``blocks`` (read: ``stored``) in consecutive parts of at most ``limit`` bytes (``_BASE_STEP_JOIN_BYTES``
        by default), one block at least."""
        limit = limit or _BASE_STEP_JOIN_BYTES
        sizes = np.fromiter((0 if stored[block] is None else len(stored[block]) for block in blocks.tolist()),
                            dtype=np.int64, count=len(blocks))
        ends = np.cumsum(sizes)
        parts, at = [], 0
        while at < len(blocks):
            stop = max(at + 1, int(np.searchsorted(ends, ends[at] - sizes[at] + limit, side="right")))
            parts.append(blocks[at:stop])
            at = stop
        return parts

    def _base_step_values(self, blocks: np.ndarray, stored: dict, seen: bool = True):
        """The values of ``blocks`` (sorted by start), each holding one fixed step of step and span 1, in one array
        (in the file's byte order): ``(values, low, high, first, run)``, block ``i`` holding keys ``[low[i], high[i])``
        from ``values[first[i]]``, blocks of one ``run`` following each other without a gap (their values too); None
        where one is not such a block (or does not decode), or blocks overlap. With ``seen``, counts the blocks as
        decoded (``_note_seen``)."""
        datas = [stored[block] for block in blocks.tolist()]
        if any(data is None for data in datas):
            return None
        sizes = np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))
        if sizes.min() < _SECTION_HEADER_SIZE:
            return None
        head = np.frombuffer(b"".join([data[:_SECTION_HEADER_SIZE] for data in datas]), dtype=self._section_dtype)
        count = head["count"].astype(np.int64)
        start = head["start"].astype(np.int64)
        low = (head["chrom"].astype(np.int64) << 32) + start
        high = low + count
        if not ((head["type"] == 3) & (head["step"] == 1) & (head["span"] == 1) & (count > 0)
                & (start + count <= 0xFFFFFFFF) & (sizes >= _SECTION_HEADER_SIZE + 4 * count)).all():
            return None
        if (low[1:] < high[:-1]).any():  # (overlapping blocks: the general path lets the later one win)
            return None
        if seen:
            with self._lock:
                new = blocks[~self._seen[blocks]]
                new = new[np.argsort(self._block_rank[new], kind="stable")]
                self._note_seen(new, lambda block: Block(*self._decode_block(block, stored[block])))
        run = np.concatenate(([0], np.cumsum(low[1:] != high[:-1])))  # blocks following each other without a gap
        values = b"".join([memoryview(data)[_SECTION_HEADER_SIZE:_SECTION_HEADER_SIZE + 4 * n]
                           for data, n in zip(datas, count.tolist())])
        return np.frombuffer(values, dtype=self._item_dtypes[3]["value"]), low, high, np.cumsum(count) - count, run

    def _fill_decoded(self, key0: np.ndarray, width: int, flat: np.ndarray, touched: tuple,
                      stored: Optional[dict] = None) -> None:
        """Fill windows from the blocks they touch (``_touched``), decoded now (``stored``: some read already) or taken
        from the cache.

        From each block only the intervals between its first and last window are kept. Clean blocks whose
        intervals follow each other are filled like a file kept whole; otherwise they are combined in stored
        order, so that where intervals overlap the later one wins.
        """
        block, window = touched
        by_block = np.argsort(block, kind="stable")
        block, first_key = block[by_block], key0[window[by_block]]
        needed, first = np.unique(block, return_index=True)
        lowest = np.minimum.reduceat(first_key, first).tolist()
        highest = (np.maximum.reduceat(first_key, first) + width).tolist()
        stored_order = np.argsort(self._block_rank[needed], kind="stable").tolist()
        parts, clean = [None] * len(needed), True  # in genome order
        for i, block in zip(stored_order, self._blocks(needed[stored_order], stored)):
            keep = block.between(lowest[i], highest[i])
            parts[i] = (block.chrom, block.start[keep], block.end[keep], block.value[keep])
            clean = clean and block.clean
        if clean and in_genome_order(parts):
            filled = spans_filled(parts)  # a value on every base (a predicted track): copied as runs of bases
            if filled is not None and covered((filled.low, filled.high), key0, width):
                filled.fill(key0, width, flat.reshape(len(key0), width))
            else:
                SparseGenome.from_blocks(parts).fill(key0, width, flat.reshape(len(key0), width))
            return
        chroms, starts, ends, values = zip(*[parts[i] for i in stored_order])
        chrom = np.repeat(np.array(chroms, dtype=np.int64), [len(v) for v in values])
        start, end = np.concatenate(starts), np.concatenate(ends)
        IntervalSet(chrom + start, chrom + end, np.concatenate(values)).scatter(key0, width, flat)

    def _resident_genome(self, key0: np.ndarray, width: int) -> "DenseGenome | SparseGenome | None":
        """The whole file decoded once and kept, from the first read of a small file or from the read that
        takes the blocks decoded to a share of a big one's; None while that is not due, or where the file is
        not clean or too big."""
        if not self._resident_ok or (self._resident is None and self._seen_blocks < self._resident_due and
                                     self._seen_blocks + self._unseen_blocks(key0, width) < self._resident_due):
            return None
        with self._lock:
            if self._resident is None and self._resident_ok:
                self._resident = self._decode_whole() if self._whole_may_fit() else None
                trim_heap()  # the decoding's temporaries, freed
                self._resident_ok = self._resident is not None
                if self._resident is not None:  # it replaces the block cache
                    self._cache.clear()
                    self._cache_size = 0
        return self._resident

    def expect(self, chrom_ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        """The windows that reads will ask for (this file's chromosome numbers, -1 where it has none; windows off a
        chromosome are left out): where they touch at least the share of a big file's blocks at which it is decoded
        whole (``_RESIDENT_AFTER_SHARE``), and a sample of its blocks says it fits (``_whole_may_fit``), it is
        decoded whole at the first read instead of after reads have decoded that share block by block (the same
        values either way)."""
        if not (self._resident is None and self._resident_ok and self._resident_due > 0):
            return
        chrom_ids, starts, ends = (np.asarray(x, dtype=np.int64) for x in (chrom_ids, starts, ends))
        inside = (chrom_ids >= 0) & (starts >= 0) & (ends > starts)
        inside[inside] = ends[inside] <= self._size_by_id[chrom_ids[inside]]
        chrom_ids, starts, ends = chrom_ids[inside], starts[inside], ends[inside]
        touched = np.zeros(len(self._block_start), dtype=bool)
        for a in range(0, len(starts), _STREAM_WINDOWS):  # bounded temporaries for any number of windows
            rows = slice(a, a + _STREAM_WINDOWS)
            key0, width = genome_keys(chrom_ids[rows], starts[rows]), ends[rows] - starts[rows]
            touched[self._touched(key0, width, owners=False)[0]] = True
        if np.count_nonzero(touched) < self._resident_due:
            return
        self._blocks(np.unique(np.linspace(0, len(touched) - 1, _FIT_SAMPLE_BLOCKS).astype(np.int64)))  # cached
        if self._whole_may_fit():
            self._resident_due = 0
            return
        key0 = genome_keys(chrom_ids, starts)
        windows = merged_ranges(key0, key0 + (ends - starts))
        intervals = self._windowed_bytes(windows, int(np.count_nonzero(touched)))
        bases = WindowedDense.bases(windows) * self._base_dtype(self._seen_narrow[1] is not None).itemsize
        if min(intervals, bases) <= self._kept_limit():
            self._windows, self._window_blocks, self._resident_due = windows, np.flatnonzero(touched), 0
            self._windows_dense = bases < intervals

    def forget_windows(self) -> None:
        """Undo ``expect`` where the file is not kept yet: reads decide as if never told the windows (a process that
        told the files the run's windows before forking the processes that read them reads a few rows itself)."""
        if self._resident is None and self._resident_ok:
            self._resident_due = self._resident_due_at_open
            self._windows = self._window_blocks = None
            self._windows_dense = False

    def _windowed_bytes(self, windows: tuple, touched: int) -> float:
        """The bytes the intervals of the ``touched`` blocks that overlap ``windows`` take, as the share of them in
        the blocks decoded so far says."""
        if not self._seen_blocks:
            return 0.0
        kept = total = 0
        for block in self._cache.values():
            if len(block.start):
                kept += int(np.count_nonzero(overlapping(windows, block.chrom + block.start.astype(np.int64),
                                                          block.chrom + block.end.astype(np.int64))))
                total += len(block.start)
        per_block = self._seen_intervals / self._sampled_blocks
        share = kept / total if total else 1.0
        return share * per_block * touched * self._kept_interval_bytes()

    def _touched(self, key0: np.ndarray, width, owners: bool = True):
        """The blocks that windows [key0, key0 + width) (``width``: one, or one per window) may touch, and (if
        asked) the window of each."""
        return expand_ranges(np.searchsorted(self._block_end_max, key0, side="right"),
                              np.searchsorted(self._block_start, key0 + width, side="left"), owners)

    def _unseen_blocks(self, key0: np.ndarray, width: int) -> int:
        """How many blocks that windows [key0, key0 + width) touch were never decoded."""
        return int(np.count_nonzero(~self._seen[np.unique(self._touched(key0, width, owners=False)[0])]))

    def _whole_may_fit(self) -> bool:
        """Whether the blocks decoded so far suggest the whole file (or, where ``expect`` found it too big, the part
        where the run's windows lie) fits in what it may keep (``_kept_limit``)."""
        if not self._seen_blocks or self._windows is not None:
            return True
        return min(self._whole_bytes()) <= self._kept_limit()

    def _whole_bytes(self) -> tuple:
        """``(as intervals, as one value per base)``: the bytes the whole file would take kept either way, as the blocks
        decoded so far say (some must have been)."""
        sparse = self._seen_intervals * len(self._seen) / self._sampled_blocks * self._kept_interval_bytes()
        dense = int(self._size_by_id.sum()) * self._base_dtype(self._seen_narrow[1] is not None).itemsize
        return sparse, dense

    def keep_at_most(self, nbytes: int) -> None:
        """Keep at most ``nbytes`` of this file (decoded whole, where the run's windows lie, or as blocks cached), as
        its share of a run's memory (``share_run_memory``); never more than a file alone keeps."""
        self._share = int(nbytes)

    def _kept_limit(self, alone: Optional[int] = None) -> int:
        """The bytes this file may keep: ``alone`` (default _RESIDENT_MAX_BYTES), or its share where less."""
        alone = _RESIDENT_MAX_BYTES if alone is None else alone
        return alone if self._share is None else min(alone, self._share)

    def _dense_expected(self) -> bool:
        """Whether the blocks decoded so far say that the whole file (``expect`` not having found it too big) takes
        fewer bytes as one value per base than as intervals, within what it may keep (a value on every base:
        fixedStep span 1, a normalised or deep track)."""
        if not self._seen_blocks or self._windows is not None:
            return False
        sparse, dense = self._whole_bytes()
        return dense < sparse and dense <= self._kept_limit()

    def _kept_interval_bytes(self) -> int:
        """The bytes an interval of this file kept whole takes, as the blocks decoded so far say
        (``SparseGenome.interval_dtypes``)."""
        return interval_bytes((self._narrow_keys, *self._seen_narrow))

    def _base_dtype(self, whole: bool) -> np.dtype:
        """The dtype of this file kept as one value per base: where ``whole`` (the intervals decoded so far hold whole
        numbers only), the first of ``WHOLE_DTYPES`` that holds the range of values the header's summary gives; else
        float32. (A block found to hold a value it does not is not kept so: ``_decode_whole``.)"""
        if not whole:
            return np.dtype(np.float32)
        if self._summary_bounds is False:  # (read once, when first needed)
            self._summary_bounds = self.value_range()
        bounds = self._summary_bounds
        if bounds is None:
            return np.dtype(np.float32)
        low, high = bounds[0], 0.0 if 0.0 < bounds[1] < _SMALLEST_FLOAT32 else bounds[1]  # (none > 0: DBL_MIN)
        whole = low <= high and float(low).is_integer() and float(high).is_integer()  # (a fraction, NaN: float32)
        return value_dtype((low, high) if whole else None)

    def _genome_offsets(self) -> np.ndarray:
        """Where each chromosome's bases begin in a file kept as one value per base (``DenseGenome``)."""
        return np.concatenate(([0], np.cumsum(self._size_by_id)))

    def _decoded_groups(self, blocks: list, stored: Optional[dict] = None):
        """``blocks`` decoded in their order, a few at a time (about ``_GROUP_INTERVALS`` intervals: their arrays stay
        in the CPU's cache until used), as lists of ``(block, chromosome key, starts, ends, values, clean)``
        (``_decode_block``'s, ``clean`` None where no fixed-step header gives it; blocks in the cache are taken out of
        it, the others taken from ``stored`` (blocks' bytes read already) or read and inflated ``_READ_GROUP`` at a
        time). A block that does not decode ends its group: its error is raised once the caller asks for the next
        group."""
        at, stored = 0, {} if stored is None else stored
        while at < len(blocks):
            group, held, error = [], 0, None
            while at < len(blocks) and held < _GROUP_INTERVALS:
                block = blocks[at]
                decoded = self._cache.pop(block, None)
                if decoded is not None:
                    self._cache_size -= len(decoded.start) * _CACHED_BYTES_PER_INTERVAL
                    decoded = (decoded.chrom, decoded.start, decoded.end, decoded.value, decoded.clean)
                elif block not in stored:  # this block and the next ones to decode, read together
                    stored = self._next_stored(blocks, at)
                    continue
                else:
                    try:
                        decoded = self._decode_block(block, stored.pop(block), check=False)
                    except InputError as err:
                        error = err
                        break
                group.append((block, *decoded))
                held += len(decoded[1])
                at += 1
                if decoded[4] is not None:  # (a fixed-step block, often large: used while its arrays are in cache)
                    break
            yield group
            if error is not None:
                raise error

    def _follows(self, block: int, chrom: int, start: np.ndarray, end: np.ndarray, reached: int):
        """The key that a decoded block (clean, not empty) reaches, where it lies within its chromosome and its indexed
        range and starts at key ``reached`` or after; else None."""
        chrom_id, last = chrom >> 32, int(end[-1])
        if (chrom_id >= len(self._size_by_id) or last > self._size_by_id[chrom_id]
                or chrom + int(start[0]) < max(reached, int(self._block_start[block]))
                or chrom + last > int(self._block_end[block])):
            return None
        return chrom + last

    def _group_parts(self, group: list, reached: int):
        """What a file kept as intervals keeps of a group of decoded blocks, none empty (``_decoded_groups``), in
        genome order after key ``reached``: ``(parts, reached)``, a part a block's intervals holding a value other
        than 0 (+0.0, as a stored NaN is read: those read as uncovered bases do) that the run's windows overlap where
        the file is kept there (``expect``), as (chromosome key, starts, ends, values); None where a block is not
        clean or lies outside its chromosome, its indexed range or genome order. The whole group is checked at once."""
        counts = np.array([len(decoded[2]) for decoded in group], dtype=np.int64)
        firsts = np.cumsum(counts) - counts
        chroms = np.array([decoded[1] for decoded in group], dtype=np.int64)
        start, end, value = (np.concatenate([decoded[k] for decoded in group]) for k in (2, 3, 4))
        if any(decoded[5] is False for decoded in group) or not clean_blocks(start, end, firsts).all():
            return None
        for block, chrom, block_start, block_end, _, _ in group:
            reached = self._follows(block, chrom, block_start, block_end, reached)
            if reached is None:
                return None
        keep = value.view(np.uint32) != 0
        if self._windows is not None:
            key_start = np.repeat(chroms, counts) + start
            keep &= overlapping(self._windows, key_start, key_start + (end - start))
        if not keep.all():
            at = np.flatnonzero(keep)
            start, end, value = start[at], end[at], value[at]
            bounds = np.searchsorted(at, np.append(firsts, len(keep)))
            firsts, counts = bounds[:-1], np.diff(bounds)
        parts = []
        for k in np.flatnonzero(counts).tolist():
            part = slice(int(firsts[k]), int(firsts[k] + counts[k]))
            parts.append((int(chroms[k]), start[part], end[part], value[part]))
        return parts, reached

    def _block_parts(self, group: list, reached: int, zeros: bool):
        """``_group_parts`` block by block, for blocks whose cleanness their fixed-step header gives (and are large,
        often mostly zeros), and for a file kept as one value a base: with ``zeros`` kept (where it is kept as
        ``DenseGenome``) or, where it is kept as ``WindowedDense``, whole blocks each with the range of windows within
        its span, ``(a, b)``, as a fifth item."""
        parts = []
        for block, chrom, start, end, value, clean in group:
            reached = self._follows(block, chrom, start, end, reached) if (
                is_clean(start, end) if clean is None else clean) else None
            if reached is None:
                return None
            if self._windows_dense:  # (``add`` clips each interval to the windows)
                low, high = self._windows
                a, b = np.searchsorted(high, chrom + int(start[0]), "right"), np.searchsorted(low, reached, "left")
                if b > a:
                    parts.append((chrom, start, end, value, (int(a), int(b))))
                continue
            keep = None if zeros else value.view(np.uint32) != 0
            if self._windows is not None:
                key_start = chrom + start.astype(np.int64)
                windowed = overlapping(self._windows, key_start, chrom + end.astype(np.int64))
                keep = windowed if keep is None else keep & windowed
            if keep is not None and not keep.all():  # (positions found once: three masks find them three times)
                at = np.flatnonzero(keep)
                start, end, value = start.take(at), end.take(at), value.take(at)
            if len(start):
                parts.append((chrom, start, end, value))
        return parts, reached

    def _decode_whole(self, allocate=None) -> "DenseGenome | SparseGenome | None":
        """Every interval of a clean file (intervals sorted, non-empty, none overlapping, each block's within
        its chromosome and its indexed range), as intervals or, where that takes less memory, as one value per base.
        None where the file is not clean (then blocks are read as needed) or takes more than it may keep
        (``_kept_limit``).
        Where ``expect`` found the file too big to keep whole, only the intervals that the run's windows overlap, of
        the blocks they touch. ``allocate(nbytes)``: a zeroed buffer to keep it in (``decode_whole_into``); default new
        arrays."""
        offsets = self._genome_offsets()
        parts, dense, held, kept, folded = [], None, 0, 0, 0
        narrow = (self._narrow_keys, True, (0.0, 0.0))  # of the first ``folded`` parts (``interval_dtypes``)
        per_interval, dense_dtype = interval_bytes(narrow), self._base_dtype(True)
        blocks = list(range(len(self._block_start))) if self._windows is None else self._window_blocks.tolist()
        if self._windows_dense:  # the windows' bases, every one of them
            dtype = self._base_dtype(self._seen_narrow[1] is not None)
            nbytes = WindowedDense.bases(self._windows) * dtype.itemsize
            dense = WindowedDense(self._windows, dtype, None if allocate is None or not nbytes else allocate(nbytes))
        elif self._dense_expected():  # kept so from the start: its intervals would take 12 bytes a base until then
            dtype = self._base_dtype(self._seen_narrow[1] is not None)
            nbytes = int(offsets[-1]) * dtype.itemsize
            dense = DenseGenome(offsets, dtype, None if allocate is None else allocate(nbytes))
        for group_parts in self._kept_parts(blocks, lambda: dense):
            if group_parts is None:
                return None
            for part in group_parts:
                if dense is not None:
                    if not holds(dense.values.dtype, part[3]):
                        return None
                    dense.add(*part)
                    continue
                parts.append(part)
                kept += len(part[1])
                if len(parts) - folded >= _NARROW_EVERY:  # the dtypes the parts need, found a few hundred parts at a time
                    narrow, folded = folded_narrow(narrow, parts[folded:]), len(parts)
                    per_interval, dense_dtype = interval_bytes(narrow), self._base_dtype(narrow[2] is not None)
                held = kept * per_interval
                dense_bytes = int(offsets[-1]) * dense_dtype.itemsize
                if held > dense_bytes and folded < len(parts):  # as the dtypes every part so far needs say
                    narrow, folded = folded_narrow(narrow, parts[folded:]), len(parts)
                    per_interval, dense_dtype = interval_bytes(narrow), self._base_dtype(narrow[2] is not None)
                    held, dense_bytes = kept * per_interval, int(offsets[-1]) * dense_dtype.itemsize
                if held > dense_bytes:  # more bytes as intervals than as one value per base
                    if dense_bytes > self._kept_limit():
                        return None
                    dense = DenseGenome(offsets, dense_dtype, None if allocate is None else allocate(dense_bytes))
                    for earlier in parts:
                        if not holds(dense_dtype, earlier[3]):
                            return None
                        dense.add(*earlier)
                    parts, folded = [], 0
                elif held > self._kept_limit():
                    return None
        if dense is not None:
            return dense
        return SparseGenome.from_blocks(parts, allocate, folded_narrow(narrow, parts[folded:]), offsets)

    def _kept_parts(self, blocks: list, dense_now):
        """What ``_decode_whole`` keeps of ``blocks``, in genome order (each block starting where the last ended or
        later), a group at a time: lists of parts (``_group_parts``, ``_block_parts``; written into the file kept as
        one value a base, ``dense_now()``, and left out of the list, where a group of blocks of one value a base is
        taken at once: ``_base_step_parts``), then None where the file is found not clean."""
        reached = -1
        for group, stored, steps in self._read_groups(blocks):
            found = None if steps is None else self._base_step_parts(group, steps, reached, dense_now())
            if found is not None:
                parts, reached = found
                yield parts
                continue
            for decoded in self._decoded_groups(group.tolist(), stored):
                decoded = [one for one in decoded if len(one[2])]
                if not decoded:
                    continue
                dense = dense_now()
                if dense is None and any(one[5] is None for one in decoded):
                    found = self._group_parts(decoded, reached)  # (bedGraph, variableStep: cleanness found at once)
                else:
                    found = self._block_parts(decoded, reached, dense is not None)
                if found is None:
                    yield None
                    return
                parts, reached = found
                yield parts

    def _read_groups(self, blocks: list):
        """``blocks`` as ``_kept_parts`` takes them, ``(blocks (int64), stored, steps)``: where the file is fixed-step
        (as its first decoded block says), read ``_READ_GROUP`` at a time (``stored``) and taken in parts of
        ``_WHOLE_JOIN_BYTES`` (``_joined_parts``), each joined where its blocks all hold one value a base
        (``steps``: ``_base_step_values``; after a part that does not, None for the rest); otherwise all at once, unread (``({}, None)``), for ``_decoded_groups`` to
        read."""
        if not self._fixed_steps:
            yield np.asarray(blocks, dtype=np.int64), {}, None
            return
        for at in range(0, len(blocks), _READ_GROUP):
            group = np.asarray(blocks[at:at + _READ_GROUP], dtype=np.int64)
            stored = self._stored_blocks(group.tolist(), floats=True)
            for part in self._joined_parts(group, stored, _WHOLE_JOIN_BYTES):
                steps = self._base_step_values(part, stored, seen=False) if self._base_steps else None
                self._base_steps = steps is not None  # (found not so: not looked for again, as ``_fill_base_steps``)
                yield part, stored, steps
            stored.clear()  # (taken: freed before the next read, which the caller's references would keep it beside)

    def _base_step_parts(self, group: np.ndarray, steps: tuple, reached: int, dense):
        """What a file decoded whole keeps of a group of blocks of one value a base (``_base_step_values``'s
        ``steps``), each within its chromosome and its indexed range, after key ``reached`` (``_follows``), taken at
        once: ``(parts, reached)``, the parts as ``_block_parts`` gives them, a part a chromosome, where the file is
        kept as intervals (``dense`` None); else written into ``dense`` (every value it must hold, ``holds``), and no
        parts. None where the group is not so, or (``WindowedDense``) a block lies across a range's end: for
        ``_decoded_groups`` to decode it block by block. A stored NaN is kept as 0, as ``_decode_block`` reads it."""
        values, low, high, first, _ = steps
        chrom = low >> 32
        if (low[0] < reached or chrom.max() >= len(self._size_by_id)
                or ((high - (chrom << 32)) > self._size_by_id[np.minimum(chrom, len(self._size_by_id) - 1)]).any()
                or (low < self._block_start[group]).any() or (high > self._block_end[group]).any()):
            return None
        reached = int(high[-1])
        values = values.astype(np.float32, copy=False)
        if np.isnan(np.minimum.reduce(values)):  # (a NaN is the minimum)
            values = np.where(np.isnan(values), np.float32(0.0), values)
        if dense is None:
            return self._nonzero_parts(values, low, first), reached
        if isinstance(dense, WindowedDense):
            rank = np.searchsorted(dense.low, low, side="right") - 1  # the range a block's first base lies in, if any
            inside = (rank >= 0) & (high <= dense.high[np.maximum(rank, 0)])
            outside = np.searchsorted(dense.high, low, side="right") == np.searchsorted(dense.low, high, side="left")
            if not (inside | outside).all():  # (a block across a range's end: clipped block by block)
                return None
            rank, low, high, first = rank[inside], low[inside], high[inside], first[inside]
            at = dense.offsets[rank] + (low - dense.low[rank])
        else:
            at = dense.offsets[chrom] + (low & 0xFFFFFFFF)
        return ([], reached) if self._write_pieces(values, first, at, high - low, dense.values) else None

    def _nonzero_parts(self, values: np.ndarray, low: np.ndarray, first: np.ndarray) -> list:
        """The bases of blocks of one value a base (``_base_step_parts``) holding a value other than 0 (+0.0) that
        the run's windows overlap where the file is kept there (``expect``), a part a chromosome."""
        at = np.flatnonzero(values.view(np.uint32) != 0)  # (a mask first: 2.5x faster than the values searched)
        key = (low - first)[np.searchsorted(first, at, side="right") - 1] + at
        if self._windows is not None:
            inside = overlapping(self._windows, key, key + 1)
            at, key = at[inside], key[inside]
        chrom = key >> 32
        bounds = np.flatnonzero(np.diff(chrom)) + 1
        parts = []
        for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(key)]):
            if b > a:
                base = int(chrom[a]) << 32
                start = (key[a:b] - base).astype(np.uint32)
                parts.append((base, start, start + np.uint32(1), values.take(at[a:b])))
        return parts

    @staticmethod
    def _write_pieces(values: np.ndarray, first: np.ndarray, at: np.ndarray, length: np.ndarray, into) -> bool:
        """Copy ``values[first[k]:first[k] + length[k]]`` to ``into[at[k]:...]`` for every ``k`` (blocks of one value
        a base, ``_base_step_parts``; pieces that follow each other in both taken as one), where ``into`` holds every
        one of ``values`` (``holds``); else write nothing and return False."""
        if not holds(into.dtype, values):
            return False
        if not len(at):
            return True
        apart = (at[1:] != at[:-1] + length[:-1]) | (first[1:] != first[:-1] + length[:-1])
        starts = np.flatnonzero(np.concatenate(([True], apart)))
        for a, f, n in zip(at[starts].tolist(), first[starts].tolist(), np.add.reduceat(length, starts).tolist()):
            into[a:a + n] = values[f:f + n]
        return True

    # ------------------------------------------- decoded whole by another process
    def decodes_whole_next(self) -> bool:
        """Whether the next read decodes the whole file (a small file, or one told by ``expect`` that the run's
        windows touch enough of it), unless it turns out not clean or too big."""
        return self._resident is None and self._resident_ok and self._resident_due == 0 and self._whole_may_fit()

    def reads_blocks(self) -> bool:
        """Whether reads decode the blocks they need as they go: the file is not kept (whole, or where the run's windows
        lie) and the next read does not decode it so (``decodes_whole_next``)."""
        return self._resident is None and not self.decodes_whole_next()

    def decode_whole_into(self, fd: int):
        """Decode the file whole, as the next read would, into the shared memory file ``fd`` (a memfd, sized here);
        return its layout for ``adopt_whole``: ``("sparse", intervals, dtypes)``, ``("dense", bases, dtype)``,
        ``("windowed", bases, dtype)``
        (the bases of the run's windows: ``WindowedDense``), or None where the
        file is not clean or too big. Run by a process decoding it beside the one that reads it."""

        def allocate(nbytes: int):
            os.ftruncate(fd, nbytes)
            return mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))

        with reading(self.path, "the bigWig's data", _FIX):
            genome = self._decode_whole(allocate)
        if genome is None:
            return None
        if isinstance(genome, (DenseGenome, WindowedDense)):
            return ("dense" if isinstance(genome, DenseGenome) else "windowed", len(genome.values),
                    genome.values.dtype.str)
        return ("sparse", *genome.layout())

    def adopt_whole(self, layout, fd: int) -> None:
        """Keep, as this file decoded whole, what ``decode_whole_into`` wrote into ``fd`` (``layout``: what it
        returned; None: the file is not clean or too big, so it is read block by block, as the read would find)."""
        with self._lock:
            if layout is None:
                self._resident_ok = False
                return
            kind, n = layout[:2]
            dtypes = tuple(np.dtype(d) for d in layout[2]) if kind == "sparse" else np.dtype(layout[2])
            size = n * (sum(dtype.itemsize for dtype in dtypes) if kind == "sparse" else dtypes.itemsize)
            buffer = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                               prot=mmap.PROT_READ) if size else None
            if kind == "sparse":
                offsets = self._genome_offsets() if dtypes[0] != np.int64 else None
                self._resident = SparseGenome(*SparseGenome.arrays(n, dtypes, buffer), offsets)
            else:
                self._resident = (DenseGenome(self._genome_offsets(), dtypes, buffer) if kind == "dense" else
                                  WindowedDense(self._windows, dtypes, buffer))
            self._cache.clear()  # it replaces the block cache
            self._cache_size = 0

    # --------------------------------------------------------------- lifetime
    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cache.clear()
        self._cache_size = 0
        self._resident = None

    def __enter__(self) -> "BigWigReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        return {"path": self.path, "share": self._share}

    def __setstate__(self, state) -> None:
        self.__init__(state["path"])
        self._share = state.get("share")

    def __repr__(self) -> str:
        return f"BigWigReader({self.path!r}, {len(self.chrom_sizes)} chromosomes)"
