"""BigWigReader against pyBigWig's ``values`` (NaN as 0), on written and real bigWig files."""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pyBigWig
import pytest

from bpnet_eval.errors import InputError
from bpnet_eval.sources import bigwig, intervals
from bpnet_eval.sources.bigwig import BigWigReader
from bpnet_eval.environment import fork_is_safe
from bpnet_eval.workers import ForkedCall

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
REAL_BIGWIGS = sorted(p for pattern in ("*/*.bw", "*/*.bigWig", "*/*.bigwig") for p in REALDATA.glob(pattern))

CHROMS = [("chr1", 200_000), ("chr2", 150_000), ("chrM", 16_569), ("chr_empty", 50_000)]


def expected(path, chroms, starts, ends) -> np.ndarray:
    with pyBigWig.open(str(path)) as bw:
        rows = [bw.values(c, int(s), int(e), numpy=True) for c, s, e in zip(chroms, starts, ends)]
    return np.nan_to_num(np.array(rows, dtype=np.float32).reshape(len(rows), -1), nan=0.0)


def assert_same(path, chroms, starts, ends, reader=None):
    starts, ends = np.asarray(starts), np.asarray(ends)
    if reader is None:
        with BigWigReader(str(path)) as reader:
            got = reader.read(chroms, starts, ends)
    else:
        got = reader.read(chroms, starts, ends)
    assert got.dtype == np.float32 and got.shape == (len(chroms), int(ends[0] - starts[0]))
    np.testing.assert_array_equal(got, expected(path, chroms, starts, ends))
    return got


def random_windows(sizes: dict[str, int], n: int, width: int, rng):
    names = [name for name, size in sizes.items() if size >= width]
    chroms = [names[i] for i in rng.integers(0, len(names), n)]
    starts = np.array([rng.integers(0, sizes[c] - width + 1) for c in chroms], dtype=np.int64)
    return chroms, starts, starts + width


def edge_windows(sizes: dict[str, int], width: int):
    """Windows at each chromosome's start and end, unsorted, some overlapping each other."""
    chroms, starts = [], []
    for name, size in sizes.items():
        if size >= width:
            chroms += [name, name, name, name]
            starts += [min(s, size - width) for s in (size - width, 0, max(0, size // 2 - width // 3), size // 2)]
    return chroms, np.array(starts), np.array(starts) + width


@pytest.fixture(params=["resident", "adaptive", "streaming", "streaming-chunked"])
def mode(request, monkeypatch):
    """The reader keeps small files decoded whole; big files are read block by block until reads have
    decoded a share of their blocks (adaptive), or always (streaming)."""
    if request.param != "resident":
        monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    if request.param == "adaptive":  # and kept intervals searched in two levels however few they are
        monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 0.3)
        monkeypatch.setattr(intervals, "_SEARCH_DIRECT_BYTES", 0)
    if request.param.startswith("streaming"):
        monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 2.0)
    if request.param == "streaming-chunked":
        monkeypatch.setattr(bigwig, "_STREAM_WINDOWS", 7)
    return request.param


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """bedGraph-, variableStep- and fixedStep-style entries on several chromosomes, written by pyBigWig."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("bw") / "mixed.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(CHROMS, maxZooms=2)
    # chr1: sparse bedGraph intervals of 1-40 bp with zero, negative and fractional values
    gaps = rng.integers(1, 300, 3000)
    lengths = rng.integers(1, 40, 3000)
    starts = np.cumsum(gaps + np.concatenate([[0], lengths[:-1]])) - gaps[0]
    ends = starts + lengths
    keep = ends <= 120_000
    values = rng.choice([0.0, 1.0, 2.0, 7.0, -3.25, 0.125, 1e-3, 12345.5], keep.sum())
    bw.addEntries(["chr1"] * int(keep.sum()), starts[keep].tolist(), ends=ends[keep].tolist(), values=values.tolist())
    # chr1: variableStep (fixed span, free starts) then fixedStep with span > step (overlapping)
    var_starts = np.arange(130_000, 150_000, 37) + rng.integers(0, 10, 541)
    bw.addEntries("chr1", var_starts.tolist(), values=rng.normal(size=541).tolist(), span=9)
    bw.addEntries("chr1", 160_000, values=rng.integers(0, 5, 2000).astype(float).tolist(), span=25, step=10)
    bw.addEntries("chr1", 190_000, values=[1.5] * 100, span=100, step=100)  # runs to the chromosome end
    # chr2: fixedStep with gaps between items, bedGraph at position 0
    bw.addEntries(["chr2"], [0], ends=[3], values=[4.0])
    bw.addEntries("chr2", 1000, values=rng.integers(0, 3, 5000).astype(float).tolist(), span=3, step=20)
    # chrM: dense 1 bp intervals over the whole chromosome
    bw.addEntries("chrM", 0, values=rng.poisson(3, 16_569).astype(float).tolist(), span=1, step=1)
    # chr_empty: nothing
    bw.close()
    return path


# ----------------------------------------------------------------- written files
def test_chrom_sizes(written):
    with BigWigReader(str(written)) as r:
        assert r.chrom_sizes == dict(CHROMS)
        assert r.path == str(written)


@pytest.mark.parametrize("width", [1, 7, 1000, 16_569])
def test_random_and_edge_windows(written, mode, width):
    sizes = dict(CHROMS)
    rng = np.random.default_rng(width)
    chroms, starts, ends = random_windows(sizes, 300 if width < 10_000 else 20, width, rng)
    edge_c, edge_s, edge_e = edge_windows(sizes, width)
    assert_same(written, chroms + edge_c, np.r_[starts, edge_s], np.r_[ends, edge_e])


def test_large_random_batch_and_reuse(written, mode):
    """Many windows in one call, then the same windows again in small unsorted batches."""
    rng = np.random.default_rng(7)
    chroms, starts, ends = random_windows(dict(CHROMS), 4000, 500, rng)
    want = expected(written, chroms, starts, ends)
    with BigWigReader(str(written)) as r:
        np.testing.assert_array_equal(r.read(chroms, starts, ends), want)
        out = np.full((64, 500), np.nan, dtype=np.float32)
        for i in range(0, 4000, 64):
            got = r.read(chroms[i:i + 64], starts[i:i + 64], ends[i:i + 64], out=out[:len(chroms[i:i + 64])])
            np.testing.assert_array_equal(got, want[i:i + 64])


def test_windows_given_by_chromosome_numbers_read_as_by_names(written, mode):
    """``read`` takes the file's chromosome numbers (``chrom_ids``) in place of names, with the same values; a
    window off its chromosome is still named in the error; numbers the file lacks are refused."""
    rng = np.random.default_rng(3)
    chroms, starts, ends = random_windows(dict(CHROMS), 500, 200, rng)
    with BigWigReader(str(written)) as r:
        ids = r.chrom_ids(chroms)
        assert ids.dtype == np.int64 and ids.min() >= 0
        np.testing.assert_array_equal(r.read(ids, starts, ends), expected(written, chroms, starts, ends))
        assert r.chrom_ids(["chr1", "chrNope"])[1] == -1
        size = dict(CHROMS)["chr1"]
        with pytest.raises(InputError, match=rf"window chr1:{size - 5}-{size + 195} lies outside the chromosome"):
            r.read(r.chrom_ids(["chr1"]), np.array([size - 5]), np.array([size + 195]))
        with pytest.raises(ValueError, match="chromosome numbers outside"):
            r.read(np.array([len(CHROMS) + 5]), np.array([0]), np.array([10]))


def test_uncovered_and_overlapping_windows(written, mode):
    chroms = np.array(["chr_empty", "chr1", "chr1", "chr1", "chr2", "chr1"])  # numpy strings work too
    starts = np.array([0, 125_000, 160_990, 161_000, 900, 160_990])  # gap, overlaps, repeats
    got = assert_same(written, chroms, starts, starts + 1000)
    assert not got[0].any() and got[2:].any()


def test_empty_batch(written):
    with BigWigReader(str(written)) as r:
        assert r.read([], np.zeros(0, int), np.zeros(0, int)).shape == (0, 0)


def test_a_file_without_data_blocks_reads_zeros_into_rows_holding_other_values(written):
    """A file with no data block (its index lists none) reads zeros over whatever the rows held: one track's rows of
    a batch, or rows back to back."""
    chroms, starts, ends = random_windows(dict(CHROMS[:2]), 12, 50, np.random.default_rng(9))
    with BigWigReader(str(written)) as r:
        r._block_start = r._block_start[:0]  # (files that list no block are refused when opened)
        batch = np.full((12, 2, 50), np.nan, np.float32)
        r.read(chroms, starts, ends, out=batch[:, 0])
        back_to_back = np.full((12, 50), np.nan, np.float32)
        r.read(chroms, starts, ends, out=back_to_back)
    assert (batch[:, 0] == 0).all() and np.isnan(batch[:, 1]).all() and (back_to_back == 0).all()


def test_pickle_reopens_by_path(written):
    with BigWigReader(str(written)) as r:
        copy = pickle.loads(pickle.dumps(r))
    with copy:
        assert_same(written, ["chrM"], [100], [200], reader=copy)
    with pytest.raises(ValueError, match="closed"):
        copy.read(["chrM"], np.array([0]), np.array([10]))


# ------------------------------------------------- clean files kept whole (dense or sparse)
LAYOUT_CHROMS = [("chr1", 20_000), ("chr2", 15_000), ("chr3", 8_000), ("chrE", 3_000)]


def random_values(rng, n):
    """Counts with zeros, fractions, negatives and NaN."""
    values = rng.poisson(1.5, n).astype(float)
    values[rng.random(n) < 0.05] = np.nan
    values[rng.random(n) < 0.05] *= -0.375
    return values


def sparse_bedgraph(rng, size, lo=1, hi=30, max_gap=200):
    """Sorted, non-overlapping intervals with random gaps (0 allowed) inside [0, size)."""
    lengths = rng.integers(lo, hi, size)
    gaps = rng.integers(0, max_gap, size)
    starts = np.cumsum(gaps + np.concatenate([[0], lengths[:-1]]))
    keep = starts + lengths <= size
    return starts[keep], (starts + lengths)[keep]


def write_layout(path, layout, rng):
    """A clean bigWig (what bedGraphToBigWig or pyBigWig writes) of one layout on LAYOUT_CHROMS."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(LAYOUT_CHROMS, maxZooms=0)
    for i, (name, size) in enumerate(LAYOUT_CHROMS[:3]):
        kind = layout if layout != "mixed" else ("per-base-fixed", "sparse", "fixed-gaps")[i]
        if kind == "sparse":
            starts, ends = sparse_bedgraph(rng, size)
            bw.addEntries([name] * len(starts), starts.tolist(), ends=ends.tolist(), values=random_values(rng, len(starts)).tolist())
        elif kind == "per-base-bedgraph":  # one interval per base, a few holes
            starts = np.flatnonzero(rng.random(size) < 0.97)
            bw.addEntries([name] * len(starts), starts.tolist(), ends=(starts + 1).tolist(), values=random_values(rng, len(starts)).tolist())
        elif kind == "per-base-fixed":  # fixedStep span 1 over the whole chromosome but its last 17 bases
            bw.addEntries(name, 0, values=random_values(rng, size - 17).tolist(), span=1, step=1)
        elif kind == "fixed-runs":  # fixedStep span = step: runs without gaps
            bw.addEntries(name, 3, values=random_values(rng, (size - 3) // 5).tolist(), span=5, step=5)
        elif kind == "fixed-gaps":  # fixedStep step > span
            bw.addEntries(name, 11, values=random_values(rng, (size - 11) // 7).tolist(), span=3, step=7)
        elif kind == "variable":  # variableStep, non-overlapping
            starts = np.cumsum(rng.integers(4, 40, size // 4))
            starts = starts[starts + 4 <= size]
            bw.addEntries(name, starts.tolist(), values=random_values(rng, len(starts)).tolist(), span=4)
    bw.close()
    return path


LAYOUTS = {"sparse": intervals.SparseGenome, "per-base-bedgraph": intervals.DenseGenome,
           "per-base-fixed": intervals.DenseGenome, "fixed-runs": intervals.SparseGenome,
           "fixed-gaps": intervals.SparseGenome, "variable": intervals.SparseGenome, "mixed": intervals.SparseGenome}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("width", [1, 37, 1000])
def test_clean_layouts_equal_pybigwig(tmp_path, mode, layout, width):
    """Random layouts in every section type, read batch after batch: the same as pyBigWig whichever way they are kept."""
    rng = np.random.default_rng([width, len(layout)])
    path = write_layout(tmp_path / f"{layout}.bw", layout, rng)
    sizes = dict(LAYOUT_CHROMS)
    chroms, starts, ends = random_windows(sizes, 400, width, rng)
    edge_c, edge_s, edge_e = edge_windows(sizes, width)
    chroms, starts, ends = chroms + edge_c, np.r_[starts, edge_s], np.r_[ends, edge_e]
    want = expected(path, chroms, starts, ends)
    with BigWigReader(str(path)) as r:
        for i in range(0, len(chroms), 61):  # into an array holding other values: every value is written
            out = np.full((len(chroms[i:i + 61]), width), np.nan, dtype=np.float32)
            r.read(chroms[i:i + 61], starts[i:i + 61], ends[i:i + 61], out=out)
            np.testing.assert_array_equal(out, want[i:i + 61])
            tracks = np.full((len(out), 3, width), np.nan, dtype=np.float32)  # one track's rows of a batch of three
            r.read(chroms[i:i + 61], starts[i:i + 61], ends[i:i + 61], out=tracks[:, 1])
            np.testing.assert_array_equal(tracks[:, 1], want[i:i + 61])
            assert np.isnan(tracks[:, [0, 2]]).all()  # the other tracks' rows untouched
        np.testing.assert_array_equal(r.read(chroms, starts, ends), want)
        kept = LAYOUTS[layout] if mode in ("resident", "adaptive") else type(None)
        assert isinstance(r._resident, kept)


def zeros_on_every_base(path, rng, nonzero=0.05):
    """A track written as the plainest writer does: fixedStep span 1 on every base of every chromosome, mostly
    zeros (counts), with a few NaN (read as 0) and -0.0 (read as it is stored)."""
    values = {}
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(LAYOUT_CHROMS, maxZooms=0)
    for name, size in LAYOUT_CHROMS:
        v = np.where(rng.random(size) < nonzero, rng.integers(1, 9, size), 0).astype(float)
        v[rng.random(size) < 0.01] = np.nan
        v[rng.random(size) < 0.01] = -0.0
        bw.addEntries(name, 0, values=v.tolist(), span=1, step=1)
        values[name] = v
    bw.close()
    return values


@pytest.mark.parametrize("beside", [False, True], ids=["here", "decoded-beside"])
def test_zeros_written_on_every_base_are_kept_as_the_nonzero_bases(tmp_path, monkeypatch, mode, beside):
    """A fixedStep span-1 track of mostly zeros is kept whole as its bases whose value is not +0.0: zeros and NaN read as uncovered bases do, so the file is kept in the memory its nonzero bases take (here:
    too big as one interval per base, and as one value per base, but not as those). The values equal pyBigWig's,
    -0.0 included."""
    if beside and not (fork_is_safe() and hasattr(os, "memfd_create")):
        pytest.skip("Linux fork and memfd")
    values = zeros_on_every_base(tmp_path / "dense.bw", np.random.default_rng(4))
    bases = sum(size for _, size in LAYOUT_CHROMS)
    held = sum(int(np.count_nonzero(np.nan_to_num(v).view(np.uint64))) for v in values.values())
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", min(bases * 4, bases * 16) - 1)
    assert held * 16 < bigwig._RESIDENT_MAX_BYTES
    chroms, starts, ends = random_windows(dict(LAYOUT_CHROMS), 300, 500, np.random.default_rng(5))
    edge_c, edge_s, edge_e = edge_windows(dict(LAYOUT_CHROMS), 500)
    chroms, starts, ends = chroms + edge_c, np.r_[starts, edge_s], np.r_[ends, edge_e]
    want = expected(tmp_path / "dense.bw", chroms, starts, ends)
    assert np.signbit(want[want == 0]).any()  # -0.0 is read as stored
    with BigWigReader(str(tmp_path / "dense.bw")) as r:
        if beside:
            shared, layout = decoded_beside(tmp_path / "dense.bw")
            r.adopt_whole(layout, shared)
            os.close(shared)
        got = np.concatenate([r.read(chroms[i:i + 50], starts[i:i + 50], ends[i:i + 50])
                              for i in range(0, len(chroms), 50)])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        if beside or mode in ("resident", "adaptive"):
            assert isinstance(r._resident, intervals.SparseGenome) and len(r._resident.key) == held
        else:  # read block by block, its nonzero intervals counted for the memory it would take kept whole
            assert 0 < r._seen_intervals <= held


def test_a_track_of_zeros_only_reads_zeros_into_rows_holding_other_values(tmp_path):
    """A fixedStep track whose every value is 0 is kept whole as no interval at all: a read into rows holding other
    values (one track's rows of a batch) writes zeros over them."""
    path = tmp_path / "zeros.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(LAYOUT_CHROMS, maxZooms=0)
    for name, size in LAYOUT_CHROMS:
        bw.addEntries(name, 0, values=[0.0] * size, span=1, step=1)
    bw.close()
    chroms, starts, ends = random_windows(dict(LAYOUT_CHROMS), 40, 100, np.random.default_rng(8))
    with BigWigReader(str(path)) as r:
        batch = np.full((40, 2, 100), np.nan, np.float32)
        r.read(chroms, starts, ends, out=batch[:, 1])
        assert isinstance(r._resident, intervals.SparseGenome) and len(r._resident.key) == 0
    assert (batch[:, 1] == 0).all() and np.isnan(batch[:, 0]).all()


NARROW = ("<u4", "<u2", "<u2")


@pytest.mark.parametrize("last, length, dtypes", [
    (65535.0, 65535, NARROW),                        # the largest whole number and length uint16 hold
    (65536.0, 65535, ("<u4", "<u2", "<f4")),         # a value past them
    (2.5, 65535, ("<u4", "<u2", "<f4")),             # a fraction
    (-1.0, 65535, ("<u4", "<u2", "|i1")),            # a negative value: signed
    (-200.0, 65535, ("<u4", "<u2", "<i2")),
    (-0.0, 65535, ("<u4", "<u2", "<f4")),            # -0.0 (read as stored: its sign kept)
    (200.0, 65536, ("<u4", "<u4", "|u1")),           # an interval longer than uint16 holds; values up to 255
])
@pytest.mark.parametrize("beside", [False, True], ids=["here", "decoded-beside"])
def test_intervals_kept_in_the_narrowest_dtypes_that_hold_them(tmp_path, last, length, dtypes, beside):
    """Read counts (whole numbers, short intervals) on a genome under 4 Gb are kept 7 to 8 bytes an interval (uint32
    genome positions, uint16 lengths, values in the first of uint8, int8, uint16, int16 that holds them); one value or
    length in the file's last block that does not fit (after blocks that did) widens that array only. Values equal
    pyBigWig's, here and decoded beside."""
    if beside and not (fork_is_safe() and hasattr(os, "memfd_create")):
        pytest.skip("Linux fork and memfd")
    rng = np.random.default_rng(12)
    sizes = [("chrA", 400_000), ("chrB", 300_000)]
    path = tmp_path / "counts.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(sizes, maxZooms=0)
    starts, ends = sparse_bedgraph(rng, 200_000, hi=5)
    bw.addEntries(["chrA"] * len(starts), starts.tolist(), ends=ends.tolist(),
                  values=rng.integers(1, 60, len(starts)).astype(float).tolist())
    bw.addEntries(["chrB"], [100_000], ends=[100_000 + length], values=[7.0])  # the file's last blocks
    bw.addEntries(["chrB"], [299_000], ends=[299_010], values=[last])
    bw.close()
    chroms, starts, ends = random_windows(dict(sizes), 200, 1000, rng)
    chroms, starts, ends = chroms + ["chrB", "chrB"], np.r_[starts, 100_000 + length - 500, 298_500], \
        np.r_[ends, 100_000 + length + 500, 299_500]
    want = expected(path, chroms, starts, ends)
    with BigWigReader(str(path)) as r:
        if beside:
            shared, layout = decoded_beside(path)
            assert layout[0] == "sparse" and layout[2] == dtypes
            r.adopt_whole(layout, shared)
            os.close(shared)
        got = r.read(chroms, starts, ends)
        kept = r._resident
        assert isinstance(kept, intervals.SparseGenome)
        assert tuple(a.dtype.str for a in (kept.key, kept.length, kept.value)) == dtypes
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("top, late, kept", [
    (200, None, "|u1"),        # counts up to 255: one byte a base
    (255, None, "|u1"),
    (256, None, "<u2"),        # up to 65535: two
    (70000, None, "<f4"),      # past that: float32
    (-100, None, "|i1"),       # a minus strand stored as negative counts: signed
    (-1000, None, "<i2"),
    (200, 3.5, None),          # a fraction in the last blocks (not the smallest or largest value): read block by block
    (200.5, None, "<f4"),      # a fraction the header's summary shows (its largest value): float32 from the start
    (-100, -1, "|i1"),         # nothing above 0 stored: the summary's largest value is DBL_MIN (libBigWig)
])
@pytest.mark.parametrize("beside", [False, True], ids=["here", "decoded-beside"])
def test_per_base_counts_are_kept_in_the_narrowest_dtype_that_holds_them(tmp_path, top, late, kept, beside):
    """A track with a value on every base is kept as one value per base in uint8, int8, uint16 or int16 where the
    header's summary puts every value in their range and the blocks decoded hold whole numbers; a block that holds a
    value the dtype does not (a fraction after whole numbers) makes it read block by block. Values equal pyBigWig's."""
    if beside and not (fork_is_safe() and hasattr(os, "memfd_create")):
        pytest.skip("Linux fork and memfd")
    rng = np.random.default_rng(int(abs(top)))
    path = tmp_path / "counts.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(LAYOUT_CHROMS, maxZooms=0)
    for name, size in LAYOUT_CHROMS:
        values = rng.integers(1, 9, size).astype(float) * (-1 if late == -1 else 1)
        values[rng.integers(0, size, 5)] = top
        if late is not None and late != -1 and name == LAYOUT_CHROMS[-1][0]:
            values[-3] = late
        bw.addEntries(name, 0, values=values.tolist(), span=1, step=1)
    bw.close()
    chroms, starts, ends = random_windows(dict(LAYOUT_CHROMS), 200, 700, rng)
    edge_c, edge_s, edge_e = edge_windows(dict(LAYOUT_CHROMS), 700)
    chroms, starts, ends = chroms + edge_c, np.r_[starts, edge_s], np.r_[ends, edge_e]
    with BigWigReader(str(path)) as r:
        if beside:
            shared, layout = decoded_beside(path)
            assert (layout is None) if kept is None else layout == ("dense", sum(n for _, n in LAYOUT_CHROMS), kept)
            r.adopt_whole(layout, shared)
            os.close(shared)
        got = np.concatenate([r.read(chroms[i:i + 64], starts[i:i + 64], ends[i:i + 64])
                              for i in range(0, len(chroms), 64)])
        if kept is None:
            assert r._resident is None and not r._resident_ok
        else:
            assert isinstance(r._resident, intervals.DenseGenome) and r._resident.values.dtype.str == kept
    np.testing.assert_array_equal(got, expected(path, chroms, starts, ends))


@pytest.mark.parametrize("fraction", [False, True], ids=["counts", "an-unsampled-fraction"])
def test_a_big_track_sampled_dense_is_kept_as_one_value_per_base_from_the_start(tmp_path, monkeypatch, fraction):
    """A big file with a value on every base, which the blocks sampled when told the run's windows (``expect``) say
    takes fewer bytes as one value per base, is decoded straight into one value per base: never held as intervals
    (12 bytes a base) on the way, which took twice the kept bytes at its peak (a 112 Mb track: 215 MB for 112 MB
    kept; here 4.5 MB for 1 MB). A fraction in a block the sample missed (not in the dtype the summary gives) leaves
    it read block by block. Values equal pyBigWig's either way."""
    import tracemalloc

    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)  # a big file: decoded whole once the windows say so
    for name, value in (("_READ_GROUP", 8), ("_READ_SPAN_BYTES", 1 << 16), ("_GROUP_INTERVALS", 4096),
                        ("_BASE_STEP_JOIN_BYTES", 1 << 16)):
        monkeypatch.setattr(bigwig, name, value)  # blocks decoded a few at a time: what is kept is the peak
    rng = np.random.default_rng(12)
    sizes = [("chr1", 600_000), ("chr2", 400_000)]
    path = tmp_path / "deep.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(sizes, maxZooms=0)
    for name, size in sizes:
        values = (1 + rng.poisson(0.5, size)).astype(float)
        if fraction and name == "chr1":
            values[300_001] = 1.5
        bw.addEntries(name, 0, values=values.tolist(), span=1, step=1)
    bw.close()
    chroms, starts, ends = random_windows(dict(sizes), 400, 1000, rng)
    with BigWigReader(str(path)) as r:
        r.expect(r.chrom_ids(chroms), starts, ends)
        assert r.decodes_whole_next() and r._dense_expected()
        assert not r._seen[np.searchsorted(r._block_start, 300_001, side="right") - 1]  # the sample missed it
        tracemalloc.start()
        try:
            r.read(chroms[:1], starts[:1], ends[:1])  # decodes the file whole
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        if fraction:
            assert r._resident is None and not r._resident_ok
        else:
            assert isinstance(r._resident, intervals.DenseGenome) and r._resident.values.dtype.str == "|u1"
            assert peak < 2 * 1_000_000  # the 1 MB kept and a few blocks
        assert_same(path, chroms, starts, ends, reader=r)


@pytest.mark.parametrize("second, key", [(294_000_000, "<u4"), (294_967_296, "<i8")])
def test_a_genome_past_4_gb_keeps_int64_keys(tmp_path, second, key):
    """Genome positions (chromosome after chromosome) are kept as uint32 below 2**32 - 2**16 bases in all, else as
    int64 ``chrom << 32 | position`` keys: the same values from a window at the far end of either genome."""
    sizes = [("chrHuge", 4_000_000_000), ("chrNext", second)]
    path = tmp_path / "huge.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(sizes, maxZooms=0)
    for name, size in sizes:
        bw.addEntries([name] * 3, [10, size - 700, size - 3], ends=[12, size - 650, size], values=[1.0, 2.0, 3.0])
    bw.close()
    chroms, starts = ["chrHuge", "chrNext", "chrNext", "chrHuge"], np.array([0, 0, second - 1000, 4_000_000_000 - 1000])
    with BigWigReader(str(path)) as r:
        got = r.read(chroms, starts, starts + 1000)
        assert r._resident.key.dtype.str == key
    np.testing.assert_array_equal(got, expected(path, chroms, starts, starts + 1000))


@pytest.mark.parametrize("span", [4 << 20, 3_000])
@pytest.mark.parametrize("whole", [True, False], ids=["decoded-whole", "block-by-block"])
def test_blocks_stored_one_after_another_are_read_together(tmp_path, monkeypatch, whole, span):
    """The blocks a read (or the decode of the whole file) needs are read by one ``pread`` per run of blocks stored
    one after another (up to ``_READ_SPAN_BYTES``), not one each: the same values as pyBigWig."""
    monkeypatch.setattr(bigwig, "_READ_SPAN_BYTES", span)
    if not whole:
        monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
        monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 2.0)
    rng = np.random.default_rng(31)
    sizes = [("chrA", 400_000), ("chrB", 300_000)]
    sections = []
    for chrom, (_, size) in enumerate(sizes):  # 200 blocks of 50 intervals each
        starts = np.sort(rng.choice(size // 4, 5000, replace=False)) * 4
        for a in range(0, len(starts), 50):
            sections.append((chrom, 1, 0, 0, 0, [(int(x), int(x) + 1 + int(x) % 3, float(x % 7))
                                                 for x in starts[a:a + 50]]))
    path = build_bigwig(tmp_path / "blocks.bw", sizes, sections)
    chroms, starts = ["chrA"] * 300, np.arange(300) * 1000  # windows in genome order: blocks one after another
    ends = starts + 2000
    reads, decoded = [], []
    real_pread, real_decode = os.pread, bigwig.BigWigReader._decode_block
    with BigWigReader(str(path)) as r:
        assert len(r._block_start) == 200
        monkeypatch.setattr(bigwig.os, "pread", lambda fd, n, at: reads.append(n) or real_pread(fd, n, at))
        monkeypatch.setattr(bigwig.BigWigReader, "_decode_block",
                            lambda self, block, raw=None, **check: decoded.append(raw is not None)
                            or real_decode(self, block, raw, **check))
        for i in range(0, 300, 100):
            assert_same(path, chroms[i:i + 100], starts[i:i + 100], ends[i:i + 100], reader=r)
    assert all(decoded) and len(decoded) >= (200 if whole else 70)  # every block decoded from a run read before
    assert max(reads) <= span and len(reads) <= (3 if span > 1 << 20 else len(decoded) / 3)


def test_blocks_with_a_value_on_every_base_fill_windows_as_runs_of_bases():
    """Read block by block, clean blocks whose intervals fill their span one base each (a predicted track) are
    copied as runs of bases (``_spans_filled``): spans that touch are merged, a window across a gap between them
    is not covered (it is filled from the intervals), and a block with a longer interval or a hole is not taken."""
    def part(chrom, first, values, step=1):
        start = np.arange(first, first + step * len(values), step, dtype=np.uint32)
        return chrom << 32, start, start + 1, np.asarray(values, np.float32)

    parts = [part(0, 10, [1, 2, 3]), part(0, 13, [4, 5]), part(0, 30, [6, 7, 8]), part(1, 0, [9, 9])]
    filled = intervals.spans_filled(parts)
    np.testing.assert_array_equal(filled.low, [10, 30, 1 << 32])
    np.testing.assert_array_equal(filled.high, [15, 33, (1 << 32) + 2])
    out = np.zeros((3, 3), np.float32)
    filled.fill(np.array([11, 30, 1 << 32]), 2, out[:, :2])
    np.testing.assert_array_equal(out[:, :2], [[2, 3], [6, 7], [9, 9]])
    assert not intervals.covered((filled.low, filled.high), np.array([14]), 3)  # across the gap 15..30
    assert intervals.spans_filled(parts + [part(2, 0, [1, 2], step=2)]) is None  # a hole between its intervals
    longer = (3 << 32, np.array([0], np.uint32), np.array([2], np.uint32), np.array([1], np.float32))
    assert intervals.spans_filled(parts + [longer]) is None


@pytest.mark.parametrize("covered", [0.05, 0.6, 1.0])
@pytest.mark.parametrize("tracks, track", [(1, 0), (2, 0), (2, 1), (3, 2)])
def test_kept_intervals_fill_one_tracks_rows_of_a_batch_of_tracks(monkeypatch, covered, tracks, track):
    """``SparseGenome.fill`` into one track's rows of a batch ``(n, S, L)`` (rows ``S * L`` values apart, as a reading
    process's shared memory holds them) writes what it writes into rows back to back, every value, whether it writes
    the covered bases alone (few covered) or whole rows with their gaps, over several steps, and no other track's."""
    monkeypatch.setattr(intervals, "_CHUNK_ELEMENTS", 5 * 37)  # windows in steps of 5,
    monkeypatch.setattr(intervals, "_FILL_ELEMENTS", 2 * 37)   # whole rows written 2 at a time
    rng = np.random.default_rng([tracks, track, int(covered * 100)])
    lengths = rng.integers(1, 9, 4000)
    gaps = rng.integers(0, max(1, int(2 * lengths.mean() * (1 - covered) / max(covered, 1e-9)) + 1), 4000)
    gaps[0] = 3
    if covered == 1.0:
        gaps[1:] = 0
    start = np.cumsum(gaps + np.r_[0, lengths[:-1]])
    value = rng.integers(1, 200, 4000).astype(np.uint8)
    genome = intervals.SparseGenome(start.astype(np.int64), lengths.astype(np.uint16), value)
    bases = np.zeros(int(start[-1] + lengths[-1]) + 100, np.float32)
    for a, n, v in zip(start, lengths, value):
        bases[a:a + n] = v
    key0 = np.r_[rng.integers(0, len(bases) - 37, 23), 0, len(bases) - 37].astype(np.int64)
    want = np.stack([bases[k:k + 37] for k in key0])
    batch = np.full((len(key0), tracks, 37), -1.0, np.float32)
    batch[:, track] = np.nan  # every value written, zeros included
    genome.fill(key0, 37, batch[:, track])
    np.testing.assert_array_equal(batch[:, track], want)
    assert (np.delete(batch, track, axis=1) == -1.0).all()
    with pytest.raises(ValueError, match="each row contiguous"):
        genome.fill(key0, 37, np.zeros((len(key0), 74), np.float32)[:, ::2])


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
def test_two_level_search_equals_searchsorted(monkeypatch, n):
    monkeypatch.setattr(intervals, "_SEARCH_DIRECT_BYTES", 0)
    rng = np.random.default_rng(n)
    key = np.cumsum(rng.integers(1, 50, n)).astype(np.int64)
    genome = intervals.SparseGenome(key, np.ones(n, np.uint32), np.ones(n, np.float32))
    needles = np.r_[key, key - 1, key + 1, rng.integers(-5, key[-1] + 5, 500)]
    for side in ("left", "right"):
        np.testing.assert_array_equal(genome.search(needles, side), np.searchsorted(key, needles, side=side))


@pytest.mark.parametrize("layout", ["sparse", "per-base-fixed"])
@pytest.mark.parametrize("small", [True, False], ids=["small-file", "big-file"])
def test_files_too_big_to_keep_whole_are_read_block_by_block(tmp_path, monkeypatch, layout, small):
    """Over _RESIDENT_MAX_BYTES as intervals and as values per base: never kept whole, same values."""
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 2_000)
    if not small:  # a big file: the blocks its first read decodes show it would not fit, so it is never decoded whole
        monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
        monkeypatch.setattr(bigwig.BigWigReader, "_decode_whole", lambda self: pytest.fail("decoded whole"))
    path = write_layout(tmp_path / f"{layout}.bw", layout, np.random.default_rng(8))
    chroms, starts, ends = random_windows(dict(LAYOUT_CHROMS), 300, 200, np.random.default_rng(9))
    with BigWigReader(str(path)) as r:
        r._resident_due = 2  # past the first read's one window
        for i, j in ((0, 1), (1, 100), (100, 300)):
            assert_same(path, chroms[i:j], starts[i:j], ends[i:j], reader=r)
        assert r._resident is None and not r._resident_ok



@pytest.mark.parametrize("fits", [True, False])
def test_expected_windows_decide_the_whole_file_decode_before_the_first_read(tmp_path, monkeypatch, fits):
    """A big file whose windows to come (``expect``) touch the share of its blocks at which it is decoded whole is
    decoded whole at the first read, however few blocks that read touches, where a sample of its blocks says it
    fits; else (too big) it is read block by block and never decoded whole. Windows off a chromosome and unknown
    chromosomes are left out of the count. The values equal pyBigWig's either way."""
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)  # a big file: decoded whole only when due
    if not fits:
        monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 2_000)
        monkeypatch.setattr(bigwig.BigWigReader, "_decode_whole", lambda self: pytest.fail("decoded whole"))
    rng = np.random.default_rng(8)
    sizes = [("chrA", 400_000), ("chrB", 300_000)]
    sections = []
    for chrom, (_, size) in enumerate(sizes):  # blocks of 50 sparse intervals each, as a writer lays them out
        starts = np.sort(rng.choice(size // 4, 5000, replace=False)) * 4
        for a in range(0, len(starts), 50):
            run = starts[a:a + 50]
            sections.append((chrom, 1, 0, 0, 0, [(int(x), int(x) + 1 + int(x) % 3, float(x % 7)) for x in run]))
    path = build_bigwig(tmp_path / "blocks.bw", sizes, sections)
    chroms, starts, ends = random_windows(dict(sizes), 300, 200, np.random.default_rng(9))
    with BigWigReader(str(path)) as r:
        due = r._resident_due
        assert len(r._block_start) == 200 and due == 50
        ids = r.chrom_ids(chroms)
        r.expect(np.r_[ids, -1, ids[0]], np.r_[starts, 0, -5], np.r_[ends, 200, 195])  # unknown, off the start
        assert (r._resident_due == 0) == fits
        assert_same(path, chroms[:1], starts[:1], ends[:1], reader=r)  # one window: a block or two
        assert (r._resident is not None) == fits
        assert_same(path, chroms, starts, ends, reader=r)
    with BigWigReader(str(path)) as r:  # windows touching few blocks: nothing decided early
        r.expect(r.chrom_ids(chroms[:1]), starts[:1], ends[:1])
        assert r._resident_due == due
    # the observed tracks' reader tells each file every window of the run before its first batch
    from bpnet_eval.regions import Regions
    from bpnet_eval.sources.tracks import BigWigTruth

    truth = BigWigTruth([str(path)], Regions(chroms, starts, ends))
    try:
        out = np.zeros((1, 1, 200), np.float32)
        truth.will_read(0, len(starts))
        truth.read_into(0, 1, out)
        np.testing.assert_array_equal(out[:, 0], expected(path, chroms[:1], starts[:1], ends[:1]))
        assert (truth._readers[0]._resident is not None) == fits
    finally:
        truth.close()
    truth = BigWigTruth([str(path)], Regions(chroms, starts, ends))  # read in-process: the same
    try:
        truth.will_read(0, len(starts))
        np.testing.assert_array_equal(truth.read(0, 1)[:, 0], expected(path, chroms[:1], starts[:1], ends[:1]))
        assert (truth._readers[0]._resident is not None) == fits
    finally:
        truth.close()
    truth = BigWigTruth([str(path)], Regions(chroms, starts, ends))  # a shard of one row: its windows alone count
    try:
        truth.will_read(0, 1)
        truth.read_into(0, 1, out)
        assert truth._readers[0]._resident is None and truth._readers[0]._resident_due == due
    finally:
        truth.close()
    truth = BigWigTruth([str(path)], Regions(chroms, starts, ends))  # not told: a few rows read, nothing expected
    try:
        truth.read_into(0, 1, out)
        assert truth._readers[0]._resident is None and truth._readers[0]._resident_due == due
    finally:
        truth.close()

def test_whole_file_chunks_big_calls(tmp_path, monkeypatch):
    """Kept whole, calls bigger than one scatter step are filled step by step."""
    monkeypatch.setattr(intervals, "_FILL_ELEMENTS", 300)
    monkeypatch.setattr(intervals, "_CHUNK_ELEMENTS", 1000)
    for layout in ("sparse", "fixed-runs", "per-base-fixed"):
        path = write_layout(tmp_path / f"{layout}.bw", layout, np.random.default_rng(5))
        chroms, starts, ends = random_windows(dict(LAYOUT_CHROMS), 50, 100, np.random.default_rng(6))
        assert_same(path, chroms, starts, ends)


# ----------------------------------------------------------- hand-built files
def build_bigwig(path, chroms, sections, *, compress=True, endian="<", index_order=None):
    """A minimal bigWig: one section per data block, one-node chromosome tree and R tree, no zooms.

    sections: (chrom_id, type, start, step, span, items), items as in the spec:
    type 1 (start, end, value), 2 (start, value), 3 value.
    """
    e = endian
    key_size = max(len(name) for name, _ in chroms)
    tree = struct.pack(e + "IIIIQQ", 0x78CA8C91, len(chroms), key_size, 8, len(chroms), 0)
    tree += struct.pack(e + "BBH", 1, 0, len(chroms))
    for i, (name, size) in enumerate(chroms):
        tree += name.encode().ljust(key_size, b"\0") + struct.pack(e + "II", i, size)
    data_offset = 64 + len(tree)
    data = struct.pack(e + "Q", len(sections))
    leaves, biggest = [], 0
    for chrom, kind, start, step, span, items in sections:
        if kind == 1:
            body = b"".join(struct.pack(e + "IIf", *it) for it in items)
            bounds = (min(it[0] for it in items), max(it[1] for it in items))
        elif kind == 2:
            body = b"".join(struct.pack(e + "If", *it) for it in items)
            bounds = (min(it[0] for it in items), max(it[0] for it in items) + span)
        else:
            body = b"".join(struct.pack(e + "f", it) for it in items)
            bounds = (start, min(start + (len(items) - 1) * step + span, 0xFFFFFFFF))  # (a wrapping one clipped)
        raw = struct.pack(e + "IIIIIBBH", chrom, bounds[0], bounds[1], step, span, kind, 0, len(items)) + body
        biggest = max(biggest, len(raw))
        block = zlib.compress(raw) if compress else raw
        leaves.append((chrom, bounds[0], chrom, bounds[1], data_offset + len(data), len(block)))
        data += block
    index_offset = data_offset + len(data)
    order = index_order or range(len(leaves))
    index = struct.pack(e + "IIQIIIIQII", 0x2468ACE0, 256, len(leaves), leaves[0][0], leaves[0][1],
                        leaves[-1][2], leaves[-1][3], index_offset + 48 + 4 + 32 * len(leaves), 1024, 0)
    index += struct.pack(e + "BBH", 1, 0, len(leaves))
    index += b"".join(struct.pack(e + "IIIIQQ", *leaves[i]) for i in order)
    header = struct.pack(e + "IHHQQQHHQQIQ", 0x888FFC26, 4, 0, 64, data_offset, index_offset, 0, 0, 0, 0,
                         biggest if compress else 0, 0)
    Path(path).write_bytes(header + tree + data + index)
    return path


HAND_CHROMS = [("chrA", 5000), ("chrB", 3000)]
HAND_SECTIONS = [
    (0, 1, 0, 0, 0, [(0, 10, 1.0), (5, 15, 2.0), (12, 13, -1.0), (100, 200, 0.5), (150, 160, float("nan"))]),
    (0, 2, 0, 0, 30, [(1000, 3.0), (1010, 4.0), (1100, 0.0)]),
    (0, 3, 2000, 7, 10, [1.0, 2.0, 3.0, 4.0, 5.0]),  # span > step: items overlap
    (0, 1, 0, 0, 0, [(2010, 2020, 9.0), (4990, 5000, 8.0)]),  # overlaps the block before
    (1, 3, 0, 100, 1, [float(i) for i in range(30)]),
]


def hand_windows(width=40):
    starts = np.arange(0, 5000 - width + 1, 13)
    chroms = ["chrA"] * len(starts) + ["chrB"] * 30
    return chroms, np.r_[starts, np.arange(30) * 97], np.r_[starts, np.arange(30) * 97] + width


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("index_order", [None, [4, 2, 0, 3, 1], [4, 3, 0, 2, 1]])
def test_hand_built_overlaps_uncompressed_unsorted_index(tmp_path, mode, compress, index_order):
    """Overlapping stored intervals (later one wins), NaN values, blocks listed out of order."""
    path = build_bigwig(tmp_path / "hand.bw", HAND_CHROMS, HAND_SECTIONS, compress=compress, index_order=index_order)
    assert_same(path, *hand_windows())


CLEAN_SECTIONS = [
    (0, 1, 0, 0, 0, [(0, 10, 1.0), (10, 15, 2.0), (20, 21, float("nan")), (100, 200, 0.5)]),
    (0, 2, 0, 0, 30, [(1000, 3.0), (1030, 4.0), (1100, 0.0)]),
    (0, 3, 2000, 10, 10, [1.0, 2.0, 3.0, 4.0, 5.0]),
    (0, 1, 0, 0, 0, [(2050, 2060, 9.0), (4990, 5000, 8.0)]),
    (1, 3, 0, 1, 1, [float(i) for i in range(3000)]),
]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("compress", [True, False])
def test_hand_built_clean_file_kept_whole(tmp_path, mode, endian, compress):
    """Clean sections in every type, big- or little-endian, compressed or not, blocks listed out of order."""
    path = build_bigwig(tmp_path / "clean.bw", HAND_CHROMS, CLEAN_SECTIONS, compress=compress, endian=endian,
                        index_order=[3, 1, 4, 0, 2])
    little = build_bigwig(tmp_path / "little.bw", HAND_CHROMS, CLEAN_SECTIONS)
    windows = hand_windows(width=60)
    with BigWigReader(str(path)) as r:
        for _ in range(2):  # adaptive: the second read finds the file kept whole
            np.testing.assert_array_equal(r.read(*windows), expected(little, *windows))
        kept = (intervals.DenseGenome, intervals.SparseGenome) if mode in ("resident", "adaptive") else type(None)
        assert isinstance(r._resident, kept)  # (whichever takes fewer bytes)


@pytest.mark.parametrize("sections", [HAND_SECTIONS, CLEAN_SECTIONS[:2] + [(0, 1, 0, 0, 0, [(150, 160, 1.0)])]],
                         ids=["overlapping", "block-before-the-last-one-ended"])
def test_files_that_are_not_clean_are_read_block_by_block(tmp_path, sections):
    path = build_bigwig(tmp_path / "unclean.bw", HAND_CHROMS, sections)
    with BigWigReader(str(path)) as r:
        assert_same(path, *hand_windows(), reader=r)
        assert r._resident is None and not r._resident_ok


def decoded_beside(path) -> tuple:
    """``path`` decoded whole by a forked process into a new memfd (``decode_whole_into``): the memfd and the layout."""
    fd = os.memfd_create("decoded")
    with ForkedCall(lambda: BigWigReader(str(path)).decode_whole_into(fd), "decoding") as call:
        return fd, call.result()


needs_fork = pytest.mark.skipif(not (fork_is_safe() and hasattr(os, "memfd_create")), reason="Linux fork and memfd")


@needs_fork
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_file_decoded_whole_by_another_process_reads_as_decoded_here(tmp_path, layout):
    """What a process decoding a file beside the reading one writes into shared memory, kept by the reader as the file
    decoded whole (mapped, not copied), gives pyBigWig's values, as intervals or one value per base."""
    rng = np.random.default_rng(len(layout))
    path = write_layout(tmp_path / f"{layout}.bw", layout, rng)
    chroms, starts, ends = random_windows(dict(LAYOUT_CHROMS), 300, 37, rng)
    fd, layout_written = decoded_beside(path)
    try:
        with BigWigReader(str(path)) as r:
            assert r.decodes_whole_next()
            r.adopt_whole(layout_written, fd)
            assert isinstance(r._resident, LAYOUTS[layout])
            held = r._resident.values if isinstance(r._resident, intervals.DenseGenome) else r._resident.key
            assert not held.flags.writeable  # a read-only mapping of the other process's pages
            np.testing.assert_array_equal(r.read(chroms, starts, ends), expected(path, chroms, starts, ends))
    finally:
        os.close(fd)


@needs_fork
def test_a_file_found_not_clean_by_the_decoding_process_is_read_block_by_block(tmp_path):
    path = build_bigwig(tmp_path / "unclean.bw", HAND_CHROMS, HAND_SECTIONS)
    fd, layout_written = decoded_beside(path)
    os.close(fd)
    assert layout_written is None
    with BigWigReader(str(path)) as r:
        r.adopt_whole(None, fd)
        assert not r.decodes_whole_next()
        assert_same(path, *hand_windows(), reader=r)
        assert r._resident is None


def test_intervals_outside_their_blocks_indexed_range_are_read_block_by_block(tmp_path):
    """A block whose index entry does not cover its intervals: pyBigWig finds it by the index, so must we."""
    path = build_bigwig(tmp_path / "lying.bw", HAND_CHROMS, CLEAN_SECTIONS)
    raw = bytearray(path.read_bytes())
    with BigWigReader(str(path)) as r:
        index_leaves = r._index_offset + 48 + 4
    struct.pack_into("<I", raw, index_leaves + 12, 150)  # block 0 claims to end at 150, not at 200
    path.write_bytes(bytes(raw))
    chroms, starts, ends = hand_windows()
    # (a window over 150-200 gets block 0's values there only when another window of its batch needs block 0)
    away = [i for i, (c, s, e) in enumerate(zip(chroms, starts, ends)) if c != "chrA" or e <= 150 or s >= 200]
    with BigWigReader(str(path)) as r:
        assert_same(path, [chroms[i] for i in away], starts[away], ends[away], reader=r)
        assert r._resident is None


def test_big_endian_file(tmp_path, mode):
    little = build_bigwig(tmp_path / "little.bw", HAND_CHROMS, HAND_SECTIONS)
    big = build_bigwig(tmp_path / "big.bw", HAND_CHROMS, HAND_SECTIONS, endian=">")
    windows = hand_windows(width=25)
    want = assert_same(little, *windows)
    with BigWigReader(str(big)) as r:
        assert r.chrom_sizes == dict(HAND_CHROMS)
        np.testing.assert_array_equal(r.read(*windows), want)


# ------------------------------------------------------------------ real files
@pytest.mark.skipif(not REAL_BIGWIGS, reason=f"no real bigWigs under {REALDATA}")
@pytest.mark.parametrize("path", REAL_BIGWIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_bigwigs(path):
    with BigWigReader(str(path)) as r, pyBigWig.open(str(path)) as bw:
        assert r.chrom_sizes == bw.chroms()
        rng = np.random.default_rng(len(path.name))
        sizes = r.chrom_sizes
        # bias towards covered bases: half the windows start near stored intervals
        chroms, starts, ends = random_windows(sizes, 300, 1000, rng)
        for name in list(sizes)[:3]:
            intervals = bw.intervals(name) or ()
            for s, _, _ in [intervals[i] for i in rng.integers(0, len(intervals), min(100, len(intervals)))]:
                start = int(np.clip(s - rng.integers(0, 1000), 0, sizes[name] - 1000))
                chroms.append(name)
                starts = np.r_[starts, start]
                ends = np.r_[ends, start + 1000]
        edge_c, edge_s, edge_e = edge_windows({c: s for c, s in sizes.items() if s >= 1000}, 1000)
        got = assert_same(path, chroms + edge_c, np.r_[starts, edge_s], np.r_[ends, edge_e], reader=r)
        assert got.any() or path.name.endswith("random100.bw")


# ---------------------------------------------------------------------- errors
def one_line_error(excinfo, path, *words):
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("chrom,start,end,words", [
    ("chrX", 0, 100, ["chrX", "not in this bigWig"]),
    ("chrM", 16_500, 16_600, ["outside", "16569"]),
    ("chr1", -10, 90, ["outside"]),
])
def test_bad_windows(written, chrom, start, end, words):
    with BigWigReader(str(written)) as r, pytest.raises(InputError) as excinfo:
        r.read(["chr1", chrom], np.array([0, start]), np.array([100, end]))
    one_line_error(excinfo, written, *words)


def test_unequal_widths(written):
    with BigWigReader(str(written)) as r, pytest.raises(InputError) as excinfo:
        r.read(["chr1", "chr1"], np.array([0, 0]), np.array([100, 50]))
    one_line_error(excinfo, written, "same positive width")


@pytest.mark.parametrize("content", [b"", b"chr1\t0\t10\t1.0\n" * 10, b"\x00" * 200])
def test_not_a_bigwig(tmp_path, content):
    path = tmp_path / "counts.bw"
    path.write_bytes(content)
    with pytest.raises(InputError) as excinfo:
        BigWigReader(str(path))
    one_line_error(excinfo, path, "not a readable bigWig")


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        BigWigReader(str(tmp_path / "nope.bw"))
    one_line_error(excinfo, tmp_path / "nope.bw", "cannot open")


def test_truncated_files(written, tmp_path):
    """Cut anywhere: InputError (at open or at read), or the same values where the cut spared data and index."""
    full = written.read_bytes()
    sizes = dict(CHROMS)
    chroms, starts, ends = random_windows(sizes, 200, 2000, np.random.default_rng(3))
    want = expected(written, chroms, starts, ends)
    cut_path = tmp_path / "cut.bw"
    for cut in sorted({10, 64, 100, 300, len(full) // 5, len(full) // 2, len(full) - 1000, len(full) - 1}):
        cut_path.write_bytes(full[:cut])
        try:
            with BigWigReader(str(cut_path)) as r:
                got = r.read(chroms, starts, ends)
        except InputError as err:
            assert "\n" not in str(err) and str(cut_path) in str(err)
        else:
            np.testing.assert_array_equal(got, want)
    with BigWigReader(str(written)) as r:
        index_at = r._index_offset
    for cut in (index_at - 100, index_at + 60):  # in the data, in the index
        cut_path.write_bytes(full[:cut])
        with pytest.raises(InputError, match="truncated"):
            BigWigReader(str(cut_path))


def test_corrupt_data_block(tmp_path):
    path = build_bigwig(tmp_path / "hand.bw", HAND_CHROMS, HAND_SECTIONS)
    raw = bytearray(path.read_bytes())
    with BigWigReader(str(path)) as r:
        first_block = int(r._block_offset[r._block_rank.argsort()[0]])
    raw[first_block + 5:first_block + 9] = b"\xff\x00\xff\x00"
    path.write_bytes(bytes(raw))
    with BigWigReader(str(path)) as r, pytest.raises(InputError) as excinfo:
        r.read(["chrA"], np.array([0]), np.array([50]))
    one_line_error(excinfo, path, "does not decompress")


def test_a_header_claiming_no_data_items_does_not_hide_the_data(tmp_path):
    """The R-tree header's item count is 0 but its tree holds the blocks: read what pyBigWig reads."""
    import struct

    path = tmp_path / "claims_empty.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([("chr1", 1000)])
    bw.addEntries(["chr1"] * 3, [10, 20, 500], ends=[15, 30, 510], values=[1.0, 2.0, 7.0])
    bw.close()
    data = bytearray(path.read_bytes())
    index_offset = struct.unpack_from("<Q", data, 24)[0]  # the header's fullIndexOffset
    assert struct.unpack_from("<I", data, index_offset)[0] == 0x2468ACE0
    struct.pack_into("<Q", data, index_offset + 8, 0)  # itemCount = 0
    path.write_bytes(bytes(data))
    with pyBigWig.open(str(path)) as reference:
        expected = np.nan_to_num(np.array(reference.values("chr1", 0, 1000)), nan=0.0)
    assert expected.sum() == 5 * 1 + 10 * 2 + 10 * 7
    with BigWigReader(str(path)) as reader:
        np.testing.assert_array_equal(reader.read(["chr1"], np.array([0]), np.array([1000]))[0], expected)


@pytest.mark.parametrize("beside", [False, True], ids=["decoded-here", "decoded-by-another-process"])
def test_a_file_too_big_to_keep_whole_is_kept_where_the_runs_windows_lie(tmp_path, monkeypatch, beside):
    """A big file whose intervals take more than _RESIDENT_MAX_BYTES (as intervals and as one value per base), told
    the run's windows (``expect``), keeps the intervals those windows overlap, from the blocks they touch (a genome-wide
    track scored on peaks: its part in the windows fits where the whole does not). Every expected window reads as
    pyBigWig's; a window outside them (shifted, or elsewhere) is read from its blocks, to pyBigWig's values too."""
    if beside and not (fork_is_safe() and hasattr(os, "memfd_create")):
        pytest.skip("Linux fork and memfd")
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 40_000)  # 2,500 intervals; the file has 10,000
    rng = np.random.default_rng(11)
    sizes = [("chrA", 400_000), ("chrB", 300_000)]
    sections = []
    for chrom, (_, size) in enumerate(sizes):
        starts = np.sort(rng.choice(size // 4, 5000, replace=False)) * 4
        for a in range(0, len(starts), 50):
            run = starts[a:a + 50]
            sections.append((chrom, 1, 0, 0, 0, [(int(x), int(x) + 1 + int(x) % 3, float(x % 7)) for x in run]))
    path = build_bigwig(tmp_path / "blocks.bw", sizes, sections)
    chroms, starts, ends = random_windows(dict(sizes), 150, 200, rng)
    starts[1], ends[1] = starts[0] + 150, ends[0] + 150  # overlapping windows merge into one range
    with BigWigReader(str(path)) as r:
        r.expect(r.chrom_ids(chroms), starts, ends)
        assert r._windows is not None and r._resident_due == 0 and r.decodes_whole_next()
        fd = None
        if beside:
            fd = os.memfd_create("decoded")
            with ForkedCall(lambda: r.decode_whole_into(fd), "decoding") as call:
                r.adopt_whole(call.result(), fd)
        try:
            for i in range(0, 150, 40):
                assert_same(path, chroms[i:i + 40], starts[i:i + 40], ends[i:i + 40], reader=r)
            assert isinstance(r._resident, intervals.SparseGenome) and 0 < len(r._resident.key) < 2_500
            assert_same(path, chroms[:5], starts[:5] + 150, ends[:5] + 150, reader=r)  # past the windows' ends
            other = random_windows(dict(sizes), 60, 200, np.random.default_rng(12))
            assert_same(path, *other, reader=r)
            assert isinstance(r._resident, intervals.SparseGenome)  # still kept for the run's windows
        finally:
            if fd is not None:
                os.close(fd)


def test_the_windows_part_of_a_file_too_big_even_there_is_read_block_by_block(tmp_path, monkeypatch):
    """Where even the intervals the windows overlap would not fit (the blocks decoded so far say so), nothing is kept:
    the file is read block by block, never decoded whole."""
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 1_000)
    monkeypatch.setattr(bigwig.BigWigReader, "_decode_whole", lambda self, allocate=None: pytest.fail("decoded"))
    path = write_layout(tmp_path / "dense.bw", "per-base-fixed", np.random.default_rng(3))
    chroms, starts, ends = random_windows(dict(LAYOUT_CHROMS), 200, 300, np.random.default_rng(4))
    with BigWigReader(str(path)) as r:
        r.expect(r.chrom_ids(chroms), starts, ends)
        assert r._windows is None and r._resident_due != 0
        assert_same(path, chroms, starts, ends, reader=r)
        assert r._resident is None


def test_merged_ranges_and_overlaps():
    starts, ends = np.array([50, 10, 30, 100, 12]), np.array([60, 20, 50, 110, 15])
    low, high = intervals.merged_ranges(starts, ends)
    assert low.tolist() == [10, 30, 100] and high.tolist() == [20, 60, 110]  # touching ranges merge, gaps stay
    inside = intervals.overlapping((low, high), np.array([0, 19, 21, 25, 59, 60, 100, 110]),
                                   np.array([10, 20, 22, 31, 60, 61, 101, 120]))
    assert inside.tolist() == [False, True, False, True, True, False, True, False]
    assert intervals.overlapping((low, high), np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == []
    assert intervals.covered((low, high), np.array([10, 30, 40, 100]), 10)
    assert not intervals.covered((low, high), np.array([10, 55]), 10)
    assert not intervals.covered((low, high), np.array([5]), 10)
    empty = intervals.merged_ranges(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert len(empty[0]) == len(empty[1]) == 0 and not intervals.covered(empty, np.array([5]), 10)
    assert intervals.covered(empty, np.zeros(0, np.int64), 10)


def test_overlapping_finds_the_intervals_that_ranges_overlap_as_a_pairwise_check_does():
    """The ranges are searched among the intervals (sorted, disjoint): the same answer as comparing every pair."""
    rng = np.random.default_rng(41)
    for _ in range(200):
        cuts = np.sort(rng.choice(400, rng.integers(2, 80), replace=False))
        start, end = cuts[0::2][:len(cuts) // 2], cuts[1::2]  # sorted, disjoint, some touching none
        ranges = intervals.merged_ranges(*np.sort(rng.integers(0, 420, (2, rng.integers(0, 12))), axis=0))
        ranges = (ranges[0][ranges[0] < ranges[1]], ranges[1][ranges[0] < ranges[1]])
        pairwise = ((ranges[0][None, :] < end[:, None]) & (start[:, None] < ranges[1][None, :])).any(axis=1)
        assert intervals.overlapping(ranges, start, end).tolist() == pairwise.tolist()


def test_clean_blocks_is_is_clean_of_each_block_laid_back_to_back():
    """Each block alone decides: a block starting before the one before it ends is clean if its own intervals are."""
    rng = np.random.default_rng(43)
    for _ in range(300):
        counts = rng.integers(1, 6, rng.integers(1, 6))
        blocks = []
        for n in counts:
            start = np.sort(rng.integers(0, 30, n)).astype(np.uint32)
            if rng.random() < 0.3:
                rng.shuffle(start)
            end = (start + rng.integers(0, 4, n)).astype(np.uint32)  # length 0 (not clean), touching, overlapping
            blocks.append((start, end))
        firsts = np.cumsum(counts) - counts
        found = intervals.clean_blocks(np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks]),
                                       firsts)
        assert found.tolist() == [intervals.is_clean(*b) for b in blocks]


@pytest.mark.parametrize("windows", [False, True], ids=["whole", "where-the-windows-lie"])
@pytest.mark.parametrize("group", [1 << 15, 37], ids=["groups", "small-groups"])
def test_many_small_blocks_on_many_contigs_decode_whole_as_pybigwig_reads_them(tmp_path, monkeypatch, windows, group):
    """A draft genome's many contigs (one block each at least, most of a few intervals) decoded whole, or where the
    run's windows lie, a group of blocks at a time: the same values as pyBigWig, zeros and NaNs left out."""
    monkeypatch.setattr(bigwig, "_GROUP_INTERVALS", group)
    rng = np.random.default_rng(47)
    sizes = [(f"scaffold_{k}", int(size)) for k, size in enumerate(rng.integers(300, 5_000, 400))]
    sections = []
    for chrom, (_, size) in enumerate(sizes):
        starts = np.sort(rng.choice(size - 3, min(size - 3, int(rng.integers(1, 120))), replace=False))
        starts = starts[np.r_[True, np.diff(starts) >= 3]]  # disjoint intervals of 1-3 bases
        values = rng.choice([0.0, np.nan, 1.0, 2.0, 7.0], len(starts), p=[0.1, 0.05, 0.45, 0.3, 0.1])
        for a in range(0, len(starts), 50):
            sections.append((chrom, 1, 0, 0, 0, [(int(x), int(x) + 1 + int(x) % 3, float(v))
                                                 for x, v in zip(starts[a:a + 50], values[a:a + 50])]))
    path = build_bigwig(tmp_path / "scaffolds.bw", sizes, sections)
    chroms, starts, ends = random_windows(dict(sizes), 300, 250, rng)
    if windows:  # too big to keep whole (~25k intervals), not where the windows lie
        monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
        monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 60_000)
    with BigWigReader(str(path)) as r:
        assert len(r._block_start) > 400
        if windows:
            r.expect(r.chrom_ids(chroms), starts, ends)  # (decodes a sample of blocks into the cache)
            assert r._windows is not None and r.decodes_whole_next() and r._cache
        assert_same(path, chroms, starts, ends, reader=r)
        assert isinstance(r._resident, intervals.SparseGenome)
        assert (r._resident.value != 0).all() and not np.isnan(r._resident.value).any()


def test_a_damaged_block_after_one_that_is_not_clean_leaves_the_file_read_block_by_block(tmp_path):
    """Decoding a file whole stops at a block that is not clean (the file is then read block by block) before a
    damaged block further on is decoded; reading that damaged block names it."""
    sections = [(0, 1, 0, 0, 0, [(10 * k + i, 10 * k + i + 1, 1.0) for i in range(5)]) for k in range(40)]
    sections[3] = (0, 1, 0, 0, 0, [(35, 36, 1.0), (31, 32, 2.0)])  # unsorted: not clean
    path = build_bigwig(tmp_path / "damaged.bw", [("chr1", 1_000)], sections)
    raw = bytearray(path.read_bytes())
    with BigWigReader(str(path)) as r:
        at = int(r._block_offset[30])
    raw[at + 2:at + 12] = b"\xff" * 10  # block 30 no longer inflates
    path.write_bytes(bytes(raw))
    with BigWigReader(str(path)) as r:
        assert r._decode_whole() is None
        assert r.read(["chr1"], np.array([0]), np.array([100])).sum() > 0  # blocks 0-9 read block by block
        with pytest.raises(InputError, match=f"byte {at}"):
            r.read(["chr1"], np.array([290]), np.array([310]))


@pytest.mark.parametrize("read_workers", [0, None], ids=["reading-thread", "reading-processes"])
def test_a_run_on_a_genome_wide_track_too_big_to_keep_scores_as_when_it_is_kept_whole(tmp_path, monkeypatch,
                                                                                       read_workers):
    """``score`` on tracks with reads all along the genome, too big to keep whole: the reading side keeps the part
    where the run's windows lie (``expect`` in the reading thread or processes, and a process decoding the second
    track beside), and every column equals the run that keeps the files whole."""
    from bpnet_eval.pipeline import score
    from tests.support.cases import make_case, write_bigwig

    case = make_case(tmp_path, n=120, length=100)
    rng = np.random.default_rng(5)
    tracks = []
    for s in range(2):  # a read every ~40 bases everywhere, the case's counts inside its windows
        per_chrom = {c: (rng.random(size) < 0.025) * rng.integers(1, 4, size).astype(float)
                     for c, size in case.chrom_sizes.items()}
        for i in range(len(case.chrom)):
            per_chrom[case.chrom[i]][case.start[i]:case.end[i]] = case.observed[i, s]
        tracks.append(str(write_bigwig(tmp_path / f"genome{s}.bw", case.chrom_sizes, per_chrom)))
    kept_whole = score(str(case.predictions), tracks, batch_size=16, read_workers=0)
    with BigWigReader(tracks[0]) as r:
        intervals = len(r._decode_whole().key)
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", intervals * 16 // 3)  # a third of the file
    windowed = []
    decode = bigwig.BigWigReader._decode_whole
    monkeypatch.setattr(bigwig.BigWigReader, "_decode_whole",
                        lambda self, allocate=None: windowed.append(self._windows is not None) or decode(self, allocate))
    result = score(str(case.predictions), tracks, batch_size=16, read_workers=read_workers)
    if read_workers == 0:
        assert windowed == [True, True]
    assert set(result.columns) == set(kept_whole.columns)
    for name, values in kept_whole.columns.items():
        np.testing.assert_array_equal(result.columns[name], values, err_msg=name)


def runs_file(path, sizes, rng, max_run=6, whole=False, gaps=False):
    """Intervals of 1..max_run - 1 bases back to back on every base (a value on every base, in short runs, as a
    normalised or predicted track holds; ``whole``: counts; ``gaps``: every fortieth run left out), written by
    pyBigWig."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(sizes, maxZooms=0)
    for name, size in sizes:
        ends = np.cumsum(rng.integers(1, max_run, size))
        ends = np.r_[ends[ends < size], size]
        starts = np.r_[0, ends[:-1]]
        if gaps:
            kept = np.arange(len(starts)) % 40 != 3
            starts, ends = starts[kept], ends[kept]
        bw.addEntries([name] * len(starts), starts.tolist(), ends=ends.tolist(),
                      values=(rng.integers(1, 50, len(starts)).astype(float) if whole
                              else rng.normal(size=len(starts)).round(3)).tolist())
    bw.close()
    return path


@pytest.mark.parametrize("whole, dtype", [(False, "<f4"), (True, "|u1")], ids=["fractions", "counts"])
@pytest.mark.parametrize("beside", [False, True], ids=["decoded-here", "decoded-by-another-process"])
@pytest.mark.parametrize("span_bases, gaps", [(1 << 16, False), (1 << 16, True), (0, True)],
                         ids=["spans", "spans-with-gaps", "clipped-interval-by-interval"])
def test_a_track_with_a_value_on_every_base_is_kept_as_the_windows_bases(tmp_path, monkeypatch, beside, whole, dtype,
                                                                         span_bases, gaps):
    """Where the run's windows hold more intervals than bases (a value on every base in short runs), the part of a
    file too big to keep whole where they lie is kept as one value per base of the windows (``_WindowedDense``):
    intervals clipped to the windows' edges, windows overlapping each other merged, a block spanning several
    windows; one byte a base for counts up to 255. A block is written over its span then copied range by range, or
    (``_SPAN_BASES`` 0) interval by interval; bases between intervals stay 0. Every expected window reads as
    pyBigWig's; others are read from their blocks."""
    if beside and not (fork_is_safe() and hasattr(os, "memfd_create")):
        pytest.skip("Linux fork and memfd")
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 60_000)  # ~15,000 bases; the file has ~150,000 intervals
    monkeypatch.setattr(intervals, "_NARROW_DTYPES", (np.int64, np.uint32))  # 12 bytes or more an interval
    monkeypatch.setattr(intervals, "_SPAN_BASES", span_bases)
    sizes = [("chrA", 300_000), ("chrB", 200_000)]
    path = runs_file(tmp_path / "runs.bw", sizes, np.random.default_rng(21), whole=whole, gaps=gaps)
    rng = np.random.default_rng(22)
    chroms, starts, ends = random_windows(dict(sizes), 300, 37, rng)
    starts[1], ends[1], chroms[1] = starts[0] + 20, ends[0] + 20, chroms[0]  # overlapping windows merge
    with BigWigReader(str(path)) as r:
        r.expect(r.chrom_ids(chroms), starts, ends)
        assert r._windows is not None and r._windows_dense
        fd = None
        if beside:
            fd = os.memfd_create("decoded")
            with ForkedCall(lambda: r.decode_whole_into(fd), "decoding") as call:
                layout = call.result()
                assert layout[0] == "windowed"
                r.adopt_whole(layout, fd)
        try:
            for i in range(0, 300, 64):
                assert_same(path, chroms[i:i + 64], starts[i:i + 64], ends[i:i + 64], reader=r)
            assert isinstance(r._resident, intervals.WindowedDense) and r._resident.values.dtype.str == dtype
            assert len(r._resident.values) == intervals.WindowedDense.bases(r._windows) <= 300 * 37
            assert_same(path, chroms[:9], starts[:9] + 30, ends[:9] + 30, reader=r)  # past the windows' ends
            assert_same(path, *random_windows(dict(sizes), 40, 37, np.random.default_rng(23)), reader=r)
        finally:
            if fd is not None:
                os.close(fd)


def test_predicted_bigwigs_too_big_to_keep_whole_score_as_when_kept_whole(tmp_path, monkeypatch):
    """Predicted bigWigs (a value on every base of each window, as chrombpnet pred_bw writes them) are told the
    run's windows (``will_read``) and, too big to keep whole, kept as the windows' values, the second file decoded
    by a process of its own where fork is safe: the same columns."""
    from bpnet_eval.pipeline import score
    from tests.support.cases import make_case, write_bigwig

    case = make_case(tmp_path, n=80, length=60)
    probs = np.exp(case.logits - case.logits.max(axis=-1, keepdims=True))
    counts = probs / probs.sum(axis=(1, 2), keepdims=True) * np.exp(case.logcounts[:, :1, None])
    predicted = []
    for s in range(2):
        per_chrom = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
        for i in range(len(case.chrom)):
            per_chrom[case.chrom[i]][case.start[i]:case.end[i]] = counts[i, s]
        predicted.append(str(write_bigwig(tmp_path / f"pred{s}.bw", case.chrom_sizes, per_chrom)))
    bed = tmp_path / "regions.bed"
    bed.write_text("".join(f"{c}\t{a}\t{b}\n" for c, a, b in zip(case.chrom, case.start, case.end)))
    truth = [str(p) for p in case.bigwigs]
    kept_whole = score(",".join(predicted), truth, str(bed), batch_size=16, read_workers=0)
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 80 * 60 * 4 + 100)  # the windows' bases, not the intervals
    kept = []
    decode = bigwig.BigWigReader._decode_whole
    monkeypatch.setattr(bigwig.BigWigReader, "_decode_whole",
                        lambda self, allocate=None: kept.append((self.path, self._windows_dense)) or decode(self, allocate))
    import bpnet_eval.inputs

    with monkeypatch.context() as here:  # decoded in this process: seen here
        here.setattr(bpnet_eval.inputs, "fork_is_safe", lambda: False)
        windowed = score(",".join(predicted), truth, str(bed), batch_size=16, read_workers=0)
    assert {(p, True) for p in predicted} <= set(kept)  # each predicted file kept as its windows' values
    beside = score(",".join(predicted), truth, str(bed), batch_size=16, read_workers=0)  # the second file forked
    for name, values in kept_whole.columns.items():
        np.testing.assert_array_equal(windowed.columns[name], values, err_msg=name)
        np.testing.assert_array_equal(beside.columns[name], values, err_msg=name)


FIXED_STEP_SECTIONS = [  # (first, step, span, values): every fixed-step case a writer may leave
    (10, 1, 1, [1.0, float("nan"), 2.0]),  # a NaN, read as 0
    (100, 5, 5, [float("inf"), float("-inf"), 3.0]),  # inf and -inf kept (their sum is NaN)
    (200, 7, 3, [1.0, 2.0]),  # gaps
    (300, 2, 10, [1.0, 2.0, 3.0]),  # span > step: overlapping
    (400, 0, 4, [1.0, 2.0, 3.0]),  # step 0: all at one start
    (500, 3, 0, [1.0, 2.0]),  # span 0: empty intervals
    (0xFFFFFFFF - 25, 10, 5, [1.0, 2.0, 3.0]),  # the last end 2**32 - 1, exactly
    (0xFFFFFFFF - 25, 10, 8, [1.0, 2.0, 3.0]),  # the last end past 2**32: wraps
    (0xFFFFFFFF - 15, 10, 1, [1.0, 2.0, 3.0]),  # a start past 2**32: wraps
    (600, 1, 1, [5.0]),  # one item
]


def test_fixed_step_blocks_decode_as_libbigwig_reads_them(tmp_path):
    """Each fixed-step block's starts and ends are libBigWig's ``first + k * step`` and ``+ span`` in uint32 (wrapping),
    its NaN values 0, and the cleanness its header gives equals that of the intervals themselves."""
    chroms = [("chrA", 0xFFFFFFFF)]
    path = build_bigwig(tmp_path / "fixed.bw", chroms, [(0, 3, first, step, span, values)
                                                        for first, step, span, values in FIXED_STEP_SECTIONS])
    with BigWigReader(str(path)) as r:
        by_offset = np.argsort(r._block_offset)
        for block, (first, step, span, values) in zip(by_offset.tolist(), FIXED_STEP_SECTIONS):
            chrom, start, end, value, clean = r._decode_block(block)
            want_start = [(first + k * step) % (1 << 32) for k in range(len(values))]
            want_end = [(s + span) % (1 << 32) for s in want_start]
            assert chrom == 0 and start.dtype == end.dtype == np.uint32
            assert start.tolist() == want_start and end.tolist() == want_end
            np.testing.assert_array_equal(value, np.nan_to_num(np.float32(values), nan=0.0, posinf=np.inf,
                                                               neginf=-np.inf))
            assert clean == intervals.is_clean(start, end), (first, step, span)


def test_blocks_read_together_are_inflated_two_at_once_and_a_damaged_one_is_named(tmp_path, monkeypatch):
    """Blocks read together are inflated by this thread and one beside it (``_inflated``): the same values as one by
    one; a block that does not decompress, in either half, is the error naming its byte offset."""
    monkeypatch.setattr(bigwig, "_INFLATE_CPUS", 2)
    sections = [(0, 3, 100 * k, 1, 1, [float(k + i) for i in range(50)]) for k in range(40)]
    path = build_bigwig(tmp_path / "many.bw", [("chrA", 5000)], sections)
    windows = (["chrA"] * 40, np.arange(40) * 100, np.arange(40) * 100 + 50)
    with BigWigReader(str(path)) as r:
        assert len(r._block_offset) == 40
        np.testing.assert_array_equal(r.read(*windows), expected(path, *windows))
    raw = bytearray(path.read_bytes())
    with BigWigReader(str(path)) as r:
        by_offset = np.argsort(r._block_offset)
        damaged = [int(r._block_offset[by_offset[k]]) for k in (3, 33)]  # one in each half
    for offset in damaged:
        broken = bytearray(raw)
        broken[offset + 2:offset + 6] = b"\xff\x00\xff\x00"
        bad = tmp_path / f"bad{offset}.bw"
        bad.write_bytes(bytes(broken))
        with BigWigReader(str(bad)) as r, pytest.raises(InputError) as excinfo:
            r.read(*windows)
        one_line_error(excinfo, bad, f"data block at byte {offset} does not decompress")


def test_inflating_beside_keeps_the_order_marks_the_damaged_and_raises_what_failed(monkeypatch):
    """``_inflated``: the streams in their order, None for one that does not decompress, and an error other than a
    bad stream in the thread beside (out of memory) raised by the caller, not lost."""
    monkeypatch.setattr(bigwig, "_INFLATE_CPUS", 2)
    plain = [bytes([k]) * (100 + k) for k in range(40)]
    raws = [zlib.compress(p) for p in plain]
    assert bigwig._inflated(raws) == plain
    assert bigwig._inflated(raws[:3]) == plain[:3]  # few: inflated here alone
    damaged = raws[:30] + [b"not zlib"] + raws[31:]
    assert bigwig._inflated(damaged) == plain[:30] + [None] + plain[31:]

    def failing(raw):
        if raw is raws[35]:
            raise MemoryError("inflating")
        return zlib.decompress(raw)

    monkeypatch.setattr(bigwig, "inflate", failing)
    with pytest.raises(MemoryError, match="inflating"):
        bigwig._inflated(raws)


@pytest.mark.parametrize("together", [1 << 20, 5, 1], ids=["all-at-once", "a-few-parts", "each-part"])
@pytest.mark.parametrize("fault", [None, "fraction", "long", "negative-zero", "huge"])
def test_the_dtypes_of_kept_intervals_are_found_from_parts_taken_together_or_alone(monkeypatch, together, fault):
    """``folded_narrow`` over parts of a file kept as intervals, taken ``_NARROW_INTERVALS`` at a time: the dtypes
    that all their intervals need, as found from every interval at once (uint16 lengths below 2**16 bases; whole
    values below 2**31 in size, not -0.0, give their span), whatever the grouping."""
    monkeypatch.setattr(intervals, "_NARROW_INTERVALS", together)
    rng = np.random.default_rng(31)
    parts, at = [], 0
    for size in (3, 1, 7, 2, 2, 9):
        start = at + np.cumsum(rng.integers(1, 5, size)).astype(np.uint32)
        end = start + rng.integers(1, 3, size).astype(np.uint32)
        parts.append([0, start, end, rng.integers(-20, 300, size).astype(np.float32)])
        at = int(end[-1]) + 1
    if fault == "fraction":
        parts[4][3][1] = 2.5
    elif fault == "long":
        parts[2][2][-1] = parts[2][1][-1] + 70_000
    elif fault == "negative-zero":
        parts[5][3][0] = -0.0
    elif fault == "huge":
        parts[1][3][0] = 2.0 ** 31
    start, end, value = (np.concatenate([part[k] for part in parts]) for k in (1, 2, 3))
    wide = value.astype(np.float64)
    negative_zero = bool(np.any((wide == 0) & np.signbit(wide)))
    whole = bool(np.all(wide == np.floor(wide)) and np.all(np.abs(wide) < 2 ** 31)) and not negative_zero
    want = (True, bool((end.astype(np.int64) - start).max() < 1 << 16),
            (min(0.0, wide.min()), max(0.0, wide.max())) if whole else None)
    assert intervals.folded_narrow((True, True, (0.0, 0.0)), [tuple(part) for part in parts]) == want
    assert want[1] == (fault != "long") and (want[2] is None) == (fault in ("fraction", "negative-zero", "huge"))
