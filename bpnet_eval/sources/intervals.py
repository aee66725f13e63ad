"""Decoded bigWig intervals kept in memory, and windows copied out of them (numpy only; no file is read here).

``BigWigReader`` (``sources/bigwig.py``) decodes a file's data blocks and keeps what a run needs in one of these:

* ``Block``: one decoded data block (the block cache of files read block by block), and ``IntervalSet`` for
  blocks that are not clean (unsorted or overlapping intervals: the one stored later wins, as in libBigWig);
* ``SparseGenome``: a clean file's intervals, sorted and disjoint, each array in the narrowest dtype that holds it
  exactly (``narrow_intervals``, ``SparseGenome.interval_dtypes``);
* ``DenseGenome``: one value a base of the whole genome (a file with a value on most bases);
* ``WindowedDense``: one value a base of the run's windows only (merged into disjoint key ranges).

Positions are int64 keys ``chrom_id << 32 | position`` (``genome_keys``), so windows on any number of chromosomes
are found with one ``searchsorted``. Every ``fill`` writes windows ``[key0, key0 + width)`` into the rows of an output,
every value (zeros between intervals), bounded temporaries at a time.
"""

from __future__ import annotations

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # output elements scattered per step (bounds memory)
_SEARCH_RUN = 16  # keys per run of the two-level search of a file kept whole as intervals
_SEARCH_NEEDLES = 1024  # needles searched per step (a 512 kB temporary)
_SEARCH_DIRECT_BYTES = 4 << 20  # keys up to this size are searched by numpy's binary search alone
_NARROW_INTERVALS = 1 << 20  # intervals whose dtypes are found together (``folded_narrow``): bounds the copies
_FILL_ELEMENTS = 1 << 17  # output elements filled per step from a file kept whole: temporaries of a few hundred
# kB are reused by malloc, where multi-MB ones are returned to the system and faulted in again on every batch (~9x slower)
# A block's intervals kept where the run's windows lie (``WindowedDense.add``) are written over the block's span, then
# copied range by range, where the span has at most this many bases and meets at most this many ranges.
_SPAN_BASES, _SPAN_RANGES = 1 << 16, 64
_NARROW_DTYPES = (np.uint32, np.uint16)  # a kept interval's key and length where they fit (else int64, uint32)
WHOLE_DTYPES = (np.uint8, np.int8, np.uint16, np.int16)  # whole numbers: the first that holds them (else float32)


def genome_keys(chrom_ids, bases) -> np.ndarray:
    """Chromosome and position folded into one sortable int64 key."""
    return (np.asarray(chrom_ids, dtype=np.int64) << 32) + np.asarray(bases, dtype=np.int64)


def expand_ranges(lo: np.ndarray, hi: np.ndarray, owners: bool = True):
    """For ranges [lo, hi): every member in order, and (if asked) its range number."""
    counts = np.maximum(hi - lo, 0)
    first = np.cumsum(counts) - counts
    members = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(lo - first, counts)
    return members, (np.repeat(np.arange(len(lo)), counts) if owners else None)


class IntervalSet:
    """Stored intervals of some data blocks, sorted by start, ready to fill windows."""

    def __init__(self, start: np.ndarray, end: np.ndarray, value: np.ndarray):
        self.rank = None  # position in stored order, where sorting changed it
        if len(start) > 1 and np.any(start[1:] < start[:-1]):
            self.rank = np.argsort(start, kind="stable")  # keeps stored order among equal starts
            start, end, value = start[self.rank], end[self.rank], value[self.rank]
        self.start, self.end, self.value = start, end, value
        self.end_max = np.maximum.accumulate(end) if len(end) else end
        self.overlapping = len(start) > 1 and bool(np.any(start[1:] < self.end_max[:-1]))

    def scatter(self, key0: np.ndarray, width: int, flat: np.ndarray) -> None:
        """Write the values of windows [key0, key0 + width) into rows of flat (n * width, zeroed)."""
        if len(self.start) == 0:
            return
        step = max(1, _CHUNK_ELEMENTS // width)
        for w0 in range(0, len(key0), step):
            k0 = key0[w0:w0 + step]
            iv, win = expand_ranges(np.searchsorted(self.end_max, k0, side="right"),
                                     np.searchsorted(self.start, k0 + width, side="left"))
            k0 = k0[win]
            a = np.maximum(self.start[iv], k0) - k0
            length = np.maximum(np.minimum(self.end[iv] - k0, width) - a, 0)
            first = a + (win + w0) * width
            pos = expand_ranges(first, first + length, owners=False)[0]
            vals = np.repeat(self.value[iv], length)
            if self.overlapping:  # the interval stored later wins, as in libBigWig
                rank = np.repeat(iv if self.rank is None else self.rank[iv], length)
                by_rank = np.argsort(rank, kind="stable")
                pos, vals = pos[by_rank], vals[by_rank]
                _, last = np.unique(pos[::-1], return_index=True)
                keep = len(pos) - 1 - last
                pos, vals = pos[keep], vals[keep]
            flat[pos] = vals


class Block:
    """One decoded data block, compact for the cache: 16 bytes per interval (one chromosome per block)."""

    __slots__ = ("chrom", "start", "end", "value", "end_max", "unsorted", "clean", "span")

    def __init__(self, chrom: int, start: np.ndarray, end: np.ndarray, value: np.ndarray, clean: bool):
        # contiguous copies of the decoded block's fields (views into its bytes): searched at every read
        start, end, value = np.ascontiguousarray(start), np.ascontiguousarray(end), np.ascontiguousarray(value)
        self.chrom, self.start, self.end, self.value = chrom, start, end, value
        self.clean = clean  # (``is_clean``, as ``_decode_block`` found it)
        self.unsorted = not self.clean and len(start) > 1 and bool(np.any(start[1:] < start[:-1]))
        self.end_max = end if self.clean else np.maximum.accumulate(end) if len(end) else end
        # keys [first start, last end) of a clean block's intervals, or None
        self.span = (chrom + int(start[0]), chrom + int(end[-1])) if self.clean and len(start) else None

    def between(self, low: int, high: int) -> slice:
        """The stored intervals that may overlap keys [low, high) (all of them if unsorted, or if the clean block
        lies inside)."""
        if self.unsorted or (self.span is not None and low <= self.span[0] and self.span[1] <= high):
            return slice(None)
        low = np.uint32(min(max(low - self.chrom, 0), 0xFFFFFFFF))  # (as the arrays' dtype: no cast of them)
        high = np.uint32(min(max(high - self.chrom, 0), 0xFFFFFFFF))
        return slice(int(self.end_max.searchsorted(low, side="right")), int(self.start.searchsorted(high, side="left")))


def holds(dtype, value: np.ndarray) -> bool:
    """Whether ``dtype`` holds every one of the float32 ``value`` exactly: each comes back bit for bit (so -0.0 and
    NaN only in float32)."""
    if np.dtype(dtype) == np.float32:
        return True
    with np.errstate(invalid="ignore"):  # (values the dtype does not hold come back otherwise)
        back = value.astype(dtype).astype(np.float32)
    return bool((back.view(np.uint32) == value.view(np.uint32)).all())


def _whole_span(value: np.ndarray):
    """``(smallest, largest)`` of float32 values that are all whole numbers below 2**31 in size (not -0.0), else
    None: what ``value_dtype`` narrows."""
    if not len(value):
        return 0.0, 0.0
    return (float(value.min()), float(value.max())) if holds(np.int32, value) else None


def _joined_span(a, b):
    return None if a is None or b is None else (min(a[0], b[0]), max(a[1], b[1]))


def value_dtype(span) -> np.dtype:
    """The first of ``WHOLE_DTYPES`` holding whole numbers in ``span`` (``_whole_span``), else float32."""
    if span is not None:
        for dtype in WHOLE_DTYPES:
            if np.iinfo(dtype).min <= span[0] and span[1] <= np.iinfo(dtype).max:
                return np.dtype(dtype)
    return np.dtype(np.float32)


def narrow_intervals(start: np.ndarray, end: np.ndarray, value: np.ndarray) -> tuple:
    """Whether every interval is shorter than 2**16 bases (uint16 lengths), and the span of its values where they are
    whole numbers (``_whole_span``): what ``SparseGenome.interval_dtypes`` narrows."""
    return (not len(start) or int((end - start).max()) < 1 << 16), _whole_span(value)


def joined_narrow(a: tuple, b: tuple) -> tuple:
    """Two ``narrow_intervals`` (or ``(keys, *narrow_intervals)``) together."""
    return (*(x and y for x, y in zip(a[:-1], b[:-1])), _joined_span(a[-1], b[-1]))


def folded_narrow(narrow: tuple, parts: list) -> tuple:
    """``narrow`` (``(keys, *narrow_intervals)``) with the intervals of ``parts`` (chromosome key, starts, ends,
    values) joined in: parts taken together up to ``_NARROW_INTERVALS`` intervals (one part that big on its own, not
    copied), until nothing is left to narrow."""
    at = 0
    while at < len(parts) and (narrow[1] or narrow[2] is not None):
        stop, held = at + 1, len(parts[at][1])
        while stop < len(parts) and held + len(parts[stop][1]) <= _NARROW_INTERVALS:
            held += len(parts[stop][1])
            stop += 1
        together = parts[at:stop]
        arrays = (together[0][k] if len(together) == 1 else np.concatenate([part[k] for part in together])
                  for k in (1, 2, 3))
        narrow = joined_narrow(narrow, (narrow[0], *narrow_intervals(*arrays)))
        at = stop
    return narrow


def interval_bytes(narrow: tuple) -> int:
    return sum(dtype.itemsize for dtype in SparseGenome.interval_dtypes(narrow))


def is_clean(start: np.ndarray, end: np.ndarray) -> bool:
    """Whether a block's intervals are non-empty, sorted and non-overlapping (what writers produce)."""
    return bool((end > start).all()) and bool((start[1:] >= end[:-1]).all())


def merged_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple:
    """Key ranges [starts, ends) merged where they overlap or touch: sorted, disjoint ``(starts, ends)``."""
    if not len(starts):
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    first = np.flatnonzero(np.r_[True, starts[1:] > reach[:-1]])
    return starts[first], np.maximum.reduceat(ends, first)


def overlapping(ranges: tuple, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which of the sorted, disjoint intervals [start, end) (int64 keys) overlap one of the sorted, disjoint
    ``ranges``: the ranges among them are searched in the intervals (a few ranges against many intervals)."""
    low, high = ranges
    if not len(start):
        return np.zeros(0, dtype=bool)
    a, b = np.searchsorted(high, start[0], side="right"), np.searchsorted(low, end[-1], side="left")
    first = np.searchsorted(end, low[a:b], side="right")  # of each range, the first interval ending after it starts
    stop = np.searchsorted(start, high[a:b], side="left")  # and the first starting at or after its end
    inside = np.zeros(len(start), dtype=bool)
    inside[expand_ranges(first, stop, owners=False)[0]] = True
    return inside


def clean_blocks(start: np.ndarray, end: np.ndarray, firsts: np.ndarray) -> np.ndarray:
    """``is_clean`` of each block of intervals laid back to back (block ``k``, not empty, from ``firsts[k]`` to the
    next block's first)."""
    good = end > start
    if len(start) > 1:
        after = start[1:] >= end[:-1]
        after[firsts[1:] - 1] = True  # (no block's first interval is compared with the block before)
        good[1:] &= after
    return np.logical_and.reduceat(good, firsts) if len(firsts) else np.zeros(0, dtype=bool)


def covered(ranges: tuple, key0: np.ndarray, width: int) -> bool:
    """Whether every window [key0, key0 + width) lies inside one of the sorted, disjoint ``ranges``."""
    low, high = ranges
    k = np.searchsorted(low, key0, side="right") - 1
    return bool(((k >= 0) & (high[np.maximum(k, 0)] >= key0 + width)).all()) if len(low) else not len(key0)


def in_genome_order(blocks: list) -> bool:
    """Whether the intervals of clean blocks (chromosome key, starts, ends, values), taken in this order, are sorted
    and none overlaps another."""
    reached = -1
    for chrom, start, end, _ in blocks:
        if len(start):
            if chrom + int(start[0]) < reached:
                return False
            reached = chrom + int(end[-1])
    return True


def _with_gaps(first: np.ndarray, stop: np.ndarray, value: np.ndarray, total: int) -> np.ndarray:
    """Bases 0..total of sorted, non-overlapping pieces [first, stop) holding value, 0 between them."""
    counts = np.empty(2 * len(first) + 1, dtype=np.int64)
    counts[1::2] = stop - first
    counts[0] = first[0] if len(first) else total
    counts[2:-1:2] = first[1:] - stop[:-1]
    counts[-1] = total - (stop[-1] if len(stop) else 0)
    values = np.zeros(len(counts), dtype=np.float32)
    values[1::2] = value
    return np.repeat(values, counts)


def _write_span(values: np.ndarray, at: int, start: np.ndarray, end: np.ndarray, value: np.ndarray) -> None:
    """Write one clean block's intervals over its span ``start[0]..end[-1]`` into ``values`` from ``at``: as they are
    where they fill the span (one base each), else with zeros between them."""
    lo, hi = int(start[0]), int(end[-1])
    values[at:at + hi - lo] = value if hi - lo == len(value) else _with_gaps(start - lo, end - lo, value, hi - lo)


def row_span(out: np.ndarray, width: int) -> tuple:
    """``out`` ``(n, width)``, whose rows are each contiguous, as one flat view from its first value to its last, and
    the distance between its rows' starts in values (``width`` where it is C-contiguous)."""
    if out.ndim != 2 or out.shape[1] != width or (len(out) > 1 and out.strides[0] % out.itemsize) or \
            (width > 1 and out.strides[1] != out.itemsize):
        raise ValueError(f"out must be (n, {width}) with each row contiguous")
    pitch = out.strides[0] // out.itemsize if len(out) > 1 else width
    if pitch < width:
        raise ValueError("out's rows overlap")
    span = (len(out) - 1) * pitch + width if len(out) else 0
    return np.lib.stride_tricks.as_strided(out, shape=(span,), strides=(out.itemsize,)), pitch


def copy_windows(values: np.ndarray, first: np.ndarray, width: int, out: np.ndarray) -> None:
    """Copy ``values[first[k]:first[k] + width]`` into row ``k`` of ``out``, a bounded number of rows at a time."""
    rows = np.lib.stride_tricks.sliding_window_view(values, width)
    step = max(1, _FILL_ELEMENTS // width)
    for w0 in range(0, len(first), step):
        out[w0:w0 + step] = rows[first[w0:w0 + step]]


class DenseGenome:
    """A clean file's values on every base of every chromosome, back to back (one value a base, in the dtype
    ``BigWigReader._base_dtype`` gives: 1-4 bytes)."""

    def __init__(self, offsets: np.ndarray, dtype=np.float32, buffer=None):
        self.offsets = offsets  # where each chromosome id's bases begin
        total = int(offsets[-1])  # in ``buffer`` (zeroed) where given, as a process decoding it beside wrote it
        self.values = np.zeros(total, dtype) if buffer is None else np.frombuffer(buffer, dtype, total)

    def add(self, chrom: int, start: np.ndarray, end: np.ndarray, value: np.ndarray) -> None:
        """Write one block's intervals (one chromosome, clean)."""
        _write_span(self.values, int(self.offsets[chrom >> 32]) + int(start[0]), start, end, value)

    def fill(self, key0: np.ndarray, width: int, out: np.ndarray) -> None:
        """Copy windows [key0, key0 + width) into the rows of out (every value)."""
        copy_windows(self.values, self.offsets[key0 >> 32] + (key0 & 0xFFFFFFFF), width, out)


class WindowedDense:
    """A file's values on every base of the run's windows (merged into sorted, disjoint key ranges), back to back
    (1-4 bytes a base, as ``DenseGenome``): how a file too big to keep whole is kept where the windows lie when that
    takes less than its intervals there (values on every base, one interval per base: a predicted bigWig)."""

    def __init__(self, ranges: tuple, dtype=np.float32, buffer=None):
        self.low, self.high = ranges
        self.offsets = np.concatenate(([0], np.cumsum(self.high - self.low)))  # where each range's bases begin
        total = int(self.offsets[-1])  # in ``buffer`` (zeroed) where given, as a process decoding it beside wrote it
        self.values = np.zeros(total, dtype) if buffer is None else np.frombuffer(buffer, dtype, total)
        self._span = np.empty(_SPAN_BASES, dtype)  # one block's span of bases (``add``)

    @staticmethod
    def bases(ranges: tuple) -> int:
        return int((ranges[1] - ranges[0]).sum())

    def add(self, chrom: int, start: np.ndarray, end: np.ndarray, value: np.ndarray, within: tuple) -> None:
        """Write one block's intervals (clean), each clipped to the ranges it overlaps, which are among ranges
        ``within = (a, b)`` (searched there only)."""
        a, b = within
        first, last = chrom + int(start[0]), chrom + int(end[-1])  # the block's span
        if b - a == 1 and first >= self.low[a] and last <= self.high[a]:  # in one range: no clipping
            _write_span(self.values, int(self.offsets[a] + (first - self.low[a])), start, end, value)
            return
        if last - first <= _SPAN_BASES and b - a <= _SPAN_RANGES:  # the span's bases written once, then each range's
            span = self._span[:last - first]                        # part of it copied (zeros between intervals)
            _write_span(span, 0, start, end, value)
            for low, high, at in zip(self.low[a:b].tolist(), self.high[a:b].tolist(), self.offsets[a:b].tolist()):
                lo, hi = max(low, first), min(high, last)
                if hi > lo:
                    self.values[at + lo - low:at + hi - low] = span[lo - first:hi - first]
            return
        key_start, key_end = chrom + start.astype(np.int64), chrom + end.astype(np.int64)
        rank, interval = expand_ranges(np.searchsorted(self.high[a:b], key_start, side="right") + a,
                                        np.searchsorted(self.low[a:b], key_end, side="left") + a)
        lo = np.maximum(key_start[interval], self.low[rank])
        at = self.offsets[rank] + (lo - self.low[rank])
        lengths = np.minimum(key_end[interval], self.high[rank]) - lo
        if len(lengths) and lengths.max() == 1:  # one base each
            self.values[at] = value[interval]
        else:
            self.values[expand_ranges(at, at + lengths, owners=False)[0]] = np.repeat(value[interval], lengths)

    def fill(self, key0: np.ndarray, width: int, out: np.ndarray) -> None:
        """Copy windows [key0, key0 + width), each inside one range, into the rows of out (every value)."""
        rank = np.searchsorted(self.low, key0, side="right") - 1
        copy_windows(self.values, self.offsets[rank] + (key0 - self.low[rank]), width, out)


def spans_filled(parts: list) -> "WindowedDense | None":
    """Clean parts of blocks in genome order (chromosome key, starts, ends, values) whose intervals each fill their
    span with one value a base, as one float32 a base of their spans (merged where they touch); None where one
    does not."""
    parts = [part for part in parts if len(part[1])]
    if not parts or any(int(end[-1]) - int(start[0]) != len(value) for _, start, end, value in parts):
        return None
    low = np.array([chrom + int(start[0]) for chrom, start, _, _ in parts], dtype=np.int64)
    high = np.array([chrom + int(end[-1]) for chrom, _, end, _ in parts], dtype=np.int64)
    filled = WindowedDense(merged_ranges(low, high))
    rank = np.searchsorted(filled.low, low, side="right") - 1
    for at, (_, _, _, value) in zip((filled.offsets[rank] + (low - filled.low[rank])).tolist(), parts):
        filled.values[at:at + len(value)] = value
    return filled


class SparseGenome:
    """A clean file's intervals, sorted by start key, none overlapping: keys, lengths and values each in the narrowest
    dtype that holds them exactly (``interval_dtypes``): 7-8 bytes an interval for read counts on a genome under 4 Gb,
    16 at most. Keys are int64 ``chrom << 32 | position``, or (``offsets`` given) uint32 positions in the genome laid
    out chromosome after chromosome, ``offsets[chrom] + position``."""

    def __init__(self, key: np.ndarray, length: np.ndarray, value: np.ndarray, offsets: np.ndarray | None = None):
        self.key, self.length, self.value, self.offsets = key, length, value, offsets
        # every 16th key, searched first (it stays in the CPU cache); none where the keys are few enough to stay there
        self.sample = key[::_SEARCH_RUN].copy() if key.nbytes > _SEARCH_DIRECT_BYTES else None

    @staticmethod
    def interval_dtypes(narrow: tuple) -> tuple:
        """The key, length and value dtypes ``narrow`` allows (genome positions under 2**32: uint32 keys, else int64;
        lengths under 2**16: uint16, else uint32; the span of whole-number values: ``value_dtype``)."""
        narrow_keys, short, span = narrow
        return (np.dtype(_NARROW_DTYPES[0] if narrow_keys else np.int64),
                np.dtype(_NARROW_DTYPES[1] if short else np.uint32),
                value_dtype(span))

    @staticmethod
    def arrays(total: int, dtypes: tuple, buffer=None) -> tuple:
        """The key, length and value arrays of ``total`` intervals: new, or laid out back to back in ``buffer``
        (widest dtype first, so each is aligned; a process decoding the file beside writes them there, the reading
        process maps them)."""
        if buffer is None or not total:
            return tuple(np.empty(total, dtype) for dtype in dtypes)
        arrays, at = [None] * 3, 0
        for k in sorted(range(3), key=lambda k: -dtypes[k].itemsize):
            arrays[k] = np.frombuffer(buffer, dtypes[k], total, at)
            at += total * dtypes[k].itemsize
        return tuple(arrays)

    @classmethod
    def from_blocks(cls, blocks: list, allocate=None, narrow: tuple = (False, False, None),
                    offsets: np.ndarray | None = None) -> "SparseGenome":
        """From clean blocks (chromosome key, uint32 starts, uint32 ends, float32 values) in genome order, in the
        dtypes ``narrow`` allows (``interval_dtypes``; narrow keys need the chromosomes' ``offsets``); written into
        ``allocate(nbytes)`` where given (``arrays``)."""
        total = sum(len(block[1]) for block in blocks)
        dtypes = cls.interval_dtypes(narrow)
        nbytes = total * sum(dtype.itemsize for dtype in dtypes)
        key, length, value = cls.arrays(total, dtypes, allocate(nbytes) if allocate is not None and total else None)
        offsets = offsets if narrow[0] else None
        first = 0
        for chrom, block_start, block_end, _ in blocks:  # written in place: no whole-file temporary (fresh pages
            stop = first + len(block_start)               # cost more than the arithmetic)
            base = chrom if offsets is None else int(offsets[chrom >> 32])
            np.add(block_start, key.dtype.type(base), out=key[first:stop], dtype=key.dtype)
            np.subtract(block_end, block_start, out=length[first:stop], casting="unsafe")  # (narrow: each < 2**16)
            first = stop
        if blocks:
            np.concatenate([block[3] for block in blocks], out=value, casting="unsafe")  # (narrow: values it holds)
        return cls(key, length, value, offsets)

    def layout(self) -> tuple:
        """What ``adopt_whole`` needs to map these arrays from shared memory: how many, and their dtypes."""
        return len(self.key), tuple(a.dtype.str for a in (self.key, self.length, self.value))

    def search(self, needles: np.ndarray, side: str) -> np.ndarray:
        """``np.searchsorted(self.key, needles, side)``: the sample, then one run of 16 keys per needle (a
        binary search of the whole array misses the CPU cache at every step once other reads have evicted it)."""
        needles = needles.astype(self.key.dtype, copy=False)  # (a search across dtypes would copy the keys)
        if self.sample is None:
            return np.searchsorted(self.key, needles, side=side)
        found = np.searchsorted(self.sample, needles, side=side)
        for i in range(0, len(needles), _SEARCH_NEEDLES):
            j, wanted = found[i:i + _SEARCH_NEEDLES], needles[i:i + _SEARCH_NEEDLES, None]
            base = np.maximum(j - 1, 0) * _SEARCH_RUN
            run = self.key[np.minimum(base[:, None] + np.arange(_SEARCH_RUN), len(self.key) - 1)]
            before = (run <= wanted) if side == "right" else (run < wanted)
            j[:] = np.where(j > 0, np.minimum(base + before.sum(axis=1), len(self.key)), 0)
        return found

    def fill(self, key0: np.ndarray, width: int, out: np.ndarray) -> None:
        """Write windows [key0, key0 + width) into the rows of out, every value (each row contiguous, rows any
        distance apart: a track's rows of a batch of several tracks)."""
        if not len(self.key):
            out[...] = 0.0
            return
        if self.offsets is not None:  # as positions in the genome, where the keys are
            key0 = self.offsets[key0 >> 32] + (key0 & 0xFFFFFFFF)
        flat, pitch = row_span(out, width)
        step = max(1, _CHUNK_ELEMENTS // width)
        for w0 in range(0, len(key0), step):
            k0 = key0[w0:w0 + step]
            last = self.search(k0, "right") - 1  # the last interval starting at or before k0
            stop = self.search(k0 + width, "left")
            held = np.maximum(last, 0)
            first = np.where((last >= 0) & (self.key[held] + self.length[held] > k0), last, last + 1)
            iv, row = expand_ranges(first, stop)
            offset = self.key[iv] - k0[row]
            a = np.maximum(offset, 0)
            b = np.minimum(offset + self.length[iv], width)
            if 4 * int((b - a).sum()) < len(k0) * width:  # few bases covered: write only those
                row *= pitch
                a += row
                b += row
                out[w0:w0 + len(k0)] = 0.0
                rows = flat[w0 * pitch:]
                rows[a] = self.value[iv]  # the first base of every piece (most pieces of sparse counts have one)
                longer = np.flatnonzero(b - a > 1)
                a, b, iv = a[longer] + 1, b[longer], iv[longer]
                rows[expand_ranges(a, b, owners=False)[0]] = np.repeat(self.value[iv], b - a)
                continue
            row *= width
            a += row
            b += row
            part = max(1, _FILL_ELEMENTS // width)  # whole rows, so no piece is cut
            cut = np.searchsorted(a, np.arange(0, len(k0) + part, part) * width).tolist()
            for r0, lo, hi in zip(range(0, len(k0), part), cut, cut[1:]):
                r1 = min(r0 + part, len(k0))
                out[w0 + r0:w0 + r1] = _with_gaps(a[lo:hi] - r0 * width, b[lo:hi] - r0 * width, self.value[iv[lo:hi]],
                                                  (r1 - r0) * width).reshape(r1 - r0, width)
