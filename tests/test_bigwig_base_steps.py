"""Files read block by block whose blocks hold one value a base (fixedStep, step and span 1: predicted bigWigs,
dense tracks written by pyBigWig): windows are copied straight from the inflated blocks (``_fill_base_steps``).
Checked against pyBigWig, and against the same reads decoded block by block (values and the whole-file estimates)."""

from __future__ import annotations

import numpy as np
import pyBigWig
import pytest

from bpnet_eval.errors import InputError
from bpnet_eval.sources import bigwig
from bpnet_eval.sources.bigwig import BigWigReader
from tests.test_bigwig_reader import build_bigwig, expected

CHROMS = [("chrA", 6000), ("chrB", 4000)]
WIDTH = 50


@pytest.fixture(autouse=True)
def block_by_block(monkeypatch):
    """Never kept whole: every read goes through the blocks."""
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 2.0)


def base_sections(rng, nan=True):
    """Fixed-step span-1 blocks: apart (gaps between), and runs of blocks that follow each other without a gap,
    values with zeros, a NaN and infinities."""
    sections = []
    for chrom, (_, size) in enumerate(CHROMS):
        at = int(rng.integers(0, 40))
        while at < size - 10:
            n = int(rng.integers(5, 120))
            n = min(n, size - at)
            values = rng.gamma(0.5, 2.0, n).astype(np.float32)
            values[rng.random(n) < 0.3] = 0.0
            if nan and rng.random() < 0.2:
                values[rng.integers(0, n)] = np.nan
            if rng.random() < 0.1:
                values[rng.integers(0, n)] = np.inf if rng.random() < 0.5 else -np.inf
            sections.append((chrom, 3, at, 1, 1, values.tolist()))
            at += n + (0 if rng.random() < 0.5 else int(rng.integers(1, 60)))  # touching the next, or a gap
    return sections


def windows(rng, n=600):
    chroms, starts = [], []
    for _ in range(n):
        chrom = int(rng.integers(0, len(CHROMS)))
        chroms.append(CHROMS[chrom][0])
        starts.append(int(rng.integers(0, CHROMS[chrom][1] - WIDTH + 1)))
    starts = np.array(starts)
    return chroms, starts, starts + WIDTH


def blocks_of_windows_off_runs(sections, chroms, starts, ends) -> set:
    """The blocks (numbered in genome order) that windows not inside one run of blocks following each other touch."""
    names = [name for name, _ in CHROMS]
    spans = [(chrom, first, first + len(values)) for chrom, _, first, _, _, values in sections]
    runs = []
    for chrom, lo, hi in spans:
        if runs and runs[-1][0] == chrom and runs[-1][2] == lo:
            runs[-1][2] = hi
        else:
            runs.append([chrom, lo, hi])
    touched = set()
    for name, start, end in zip(chroms, starts.tolist(), ends.tolist()):
        chrom = names.index(name)
        if not any(c == chrom and lo <= start and end <= hi for c, lo, hi in runs):
            touched |= {i for i, (c, lo, hi) in enumerate(spans) if c == chrom and lo < end and start < hi}
    return touched


def estimates(reader) -> tuple:
    return (reader._seen.tolist(), reader._seen_blocks, reader._sampled_blocks, reader._seen_intervals,
            reader._seen_narrow)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("read_bytes, join_bytes", [(32 << 20, 4 << 20), (1, 4 << 20), (32 << 20, 1)],
                         ids=["together", "a-block-a-read", "a-block-a-join"])
def test_windows_copied_from_blocks_of_one_value_a_base_equal_pybigwig(tmp_path, monkeypatch, endian, compress,
                                                                       read_bytes, join_bytes):
    """Windows inside one block, across blocks that follow each other, across gaps and wholly uncovered; blocks read
    all at once or one at a time (windows across two reads or joins are decoded block by block): pyBigWig's values,
    and the same estimates of the whole file as when every block is decoded on its own."""
    monkeypatch.setattr(bigwig, "_BASE_STEP_READ_BYTES", read_bytes)
    monkeypatch.setattr(bigwig, "_BASE_STEP_JOIN_BYTES", join_bytes)
    rng = np.random.default_rng(7)
    sections = base_sections(rng)
    path = build_bigwig(tmp_path / "steps.bw", CHROMS, sections, compress=compress, endian=endian)
    little = build_bigwig(tmp_path / "little.bw", CHROMS, sections)
    blocks_decoded = set()
    with BigWigReader(str(path)) as fast, BigWigReader(str(path)) as decoded:
        decoded._base_steps = False
        for batch in range(3):
            chroms, starts, ends = windows(np.random.default_rng(batch))
            blocks_decoded |= blocks_of_windows_off_runs(sections, chroms, starts, ends)
            got = fast.read(chroms, starts, ends)
            np.testing.assert_array_equal(got, decoded.read(chroms, starts, ends))  # infinities included
            big = np.finfo(np.float32).max  # (pyBigWig gives a stored infinity as the largest float32)
            np.testing.assert_array_equal(np.clip(got, -big, big), expected(little, chroms, starts, ends))
            assert estimates(fast) == estimates(decoded)
        assert fast._base_steps
        if min(read_bytes, join_bytes) > 1:  # only windows off the runs of blocks read from decoded (and cached) blocks
            assert set(fast._cache) == blocks_decoded and len(decoded._cache) == len(sections)


def test_a_window_on_blocks_apart_reads_zeros_between_them(tmp_path):
    sections = [(0, 3, 100, 1, 1, [1.0] * 20), (0, 3, 130, 1, 1, [2.0] * 20), (0, 3, 150, 1, 1, [3.0] * 40)]
    path = build_bigwig(tmp_path / "apart.bw", CHROMS, sections)
    with BigWigReader(str(path)) as r:
        r.read(["chrA"], np.array([131]), np.array([181]))
        assert not r._cache  # (across two blocks following each other: from their bytes)
        got = r.read(["chrA"] * 3, np.array([95, 125, 131]), np.array([145, 175, 181]))
        assert set(r._cache) == {0, 1, 2}  # (the first two across a gap: decoded)
    want = np.zeros((3, 50), dtype=np.float32)
    want[0, 5:25], want[0, 35:50] = 1.0, 2.0
    want[1, 5:25], want[1, 25:50] = 2.0, 3.0
    want[2, :19], want[2, 19:50] = 2.0, 3.0
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("other", [
    (0, 1, 0, 0, 0, [(150, 160, 9.0)]),  # a bedGraph block stored later over a fixed-step one: it wins
    (0, 3, 140, 1, 1, [7.0] * 30),  # fixed-step blocks overlapping: the later one wins
    (0, 3, 300, 2, 1, [5.0] * 10),  # steps of 2
    (0, 3, 400, 1, 3, [4.0] * 10),  # span 3: overlapping intervals
], ids=["bedgraph", "overlapping", "step-2", "span-3"])
def test_blocks_not_all_of_one_value_a_base_are_decoded_block_by_block(tmp_path, other):
    sections = [(0, 3, 100, 1, 1, [float(i) for i in range(100)]), (0, 3, 200, 1, 1, [1.0] * 300), other]
    path = build_bigwig(tmp_path / "mixed.bw", CHROMS, sections)
    starts = np.arange(80, 560, 7)
    chroms = ["chrA"] * len(starts)
    with BigWigReader(str(path)) as r:
        want = expected(path, chroms, starts, starts + WIDTH)
        np.testing.assert_array_equal(r.read(chroms, starts, starts + WIDTH), want)
        assert not r._base_steps  # found not so: block by block from then on
        np.testing.assert_array_equal(r.read(chroms, starts, starts + WIDTH), want)


def test_a_damaged_block_of_one_value_a_base_is_one_line_naming_the_file(tmp_path):
    sections = [(0, 3, 100, 1, 1, [1.0] * 100), (0, 3, 300, 1, 1, [2.0] * 100)]
    path = build_bigwig(tmp_path / "damaged.bw", CHROMS, sections)
    with BigWigReader(str(path)) as r:
        offset = int(r._block_offset[1])
    raw = bytearray(path.read_bytes())
    raw[offset + 2:offset + 12] = b"\xff" * 10
    path.write_bytes(bytes(raw))
    with BigWigReader(str(path)) as r, pytest.raises(InputError) as excinfo:
        r.read(["chrA"], np.array([310]), np.array([360]))
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and "does not decompress" in message


def test_predicted_bigwig_written_by_pybigwig_reads_as_pybigwig_reads_it(tmp_path):
    """One pyBigWig ``addEntries`` a window (one fixed-step block each; touching windows joined into one block),
    as chrombpnet writes its predicted bigWigs; read in batches of windows in any order."""
    rng = np.random.default_rng(3)
    path = str(tmp_path / "pred.bw")
    bw = pyBigWig.open(path, "w")
    bw.addHeader(CHROMS, maxZooms=0)
    starts = {name: np.sort(rng.choice(np.arange(0, size - 2 * WIDTH, WIDTH), 20, replace=False))
              for name, size in CHROMS}
    for name, _ in CHROMS:
        for start in starts[name].tolist():
            bw.addEntries(name, start, values=rng.random(WIDTH).astype(np.float32).tolist(), span=1, step=1)
    bw.close()
    chroms = [name for name, _ in CHROMS for _ in starts[name]]
    first = np.concatenate([starts[name] for name, _ in CHROMS]) + rng.integers(-10, 11, len(chroms))
    first = np.clip(first, 0, None)
    order = rng.permutation(len(chroms))
    chroms, first = [chroms[i] for i in order], first[order]
    with BigWigReader(path) as r:
        for a in range(0, len(chroms), 9):
            rows = slice(a, a + 9)
            np.testing.assert_array_equal(r.read(chroms[rows], first[rows], first[rows] + WIDTH),
                                          expected(path, chroms[rows], first[rows], first[rows] + WIDTH))
        assert r._base_steps


def test_blocks_inflating_past_the_headers_largest_block_are_read_whole(tmp_path):
    """Blocks of one value a base are inflated within the header's largest block size (libdeflate); one that inflates
    to more (a header that understates it) is inflated again without a bound: the same values."""
    sections = [(0, 3, 100, 1, 1, [float(i) for i in range(300)]), (0, 3, 500, 1, 1, [2.5] * 400)]
    right = build_bigwig(tmp_path / "right.bw", CHROMS, sections)
    raw = bytearray(right.read_bytes())
    assert int.from_bytes(raw[52:56], "little") == 24 + 4 * 400  # (uncompressBufSize: the largest block)
    raw[52:56] = (64).to_bytes(4, "little")
    small = tmp_path / "small.bw"
    small.write_bytes(bytes(raw))
    starts = np.r_[np.arange(100, 351, 23), np.arange(500, 851, 23)]  # (each inside a block)
    chroms = ["chrA"] * len(starts)
    with BigWigReader(str(small)) as r:
        want = expected(right, chroms, starts, starts + WIDTH)
        np.testing.assert_array_equal(r.read(chroms, starts, starts + WIDTH), want)
        assert r._base_steps and not r._cache


@pytest.mark.parametrize("kind", [1, 3])
def test_blocks_of_a_fixed_step_file_are_inflated_within_the_largest_block_size(tmp_path, monkeypatch, kind):
    """Once a block decoded shows the file holds fixed-step sections, the next blocks read are inflated by
    ``inflate_within`` (libdeflate); a bedGraph file's are not, after the first read. The same values either way."""
    monkeypatch.setattr(bigwig, "_READ_GROUP", 4)
    sections = []
    for k in range(40):  # steps of 2: never read as blocks of one value a base
        first = 100 * k
        if kind == 3:
            sections.append((0, 3, first, 2, 1, [float(k + i) for i in range(30)]))
        else:
            sections.append((0, 1, 0, 0, 0, [(first + 2 * i, first + 2 * i + 1, float(k + i)) for i in range(30)]))
    path = build_bigwig(tmp_path / "steps.bw", CHROMS, sections)
    sized = []
    real = bigwig.inflate_within
    monkeypatch.setattr(bigwig, "inflate_within", lambda raw, size: sized.append(size) or real(raw, size))
    starts = np.arange(0, 3950, 37)
    chroms = ["chrA"] * len(starts)
    with BigWigReader(str(path)) as r:
        for _ in range(2):  # (the first read tries them as blocks of one value a base: inflated within, whatever kind)
            sized.clear()
            r._cache.clear()
            np.testing.assert_array_equal(r.read(chroms, starts, starts + WIDTH),
                                          expected(path, chroms, starts, starts + WIDTH))
            assert not r._base_steps
    assert (len(sized) >= 30) if kind == 3 else not sized


def kept_as_windows(path, chroms, starts, ends, fast: bool):
    """A reader told the windows (``expect``), the file too big to keep whole but not where they lie: kept as their
    bases, decoded at the first read through blocks of one value a base at a time (``fast``) or block by block
    (``_RESIDENT_AFTER_SHARE`` as the reader has it: the windows touch enough blocks)."""
    reader = BigWigReader(str(path))
    reader.expect(reader.chrom_ids(chroms), starts, ends)
    if not fast:
        reader._fixed_steps = False
    got = reader.read(chroms, starts, ends)
    return reader, got


@pytest.mark.parametrize("group", [256, 3])
def test_windows_kept_from_blocks_of_one_value_a_base_equal_those_kept_block_by_block(tmp_path, monkeypatch, group):
    """A predicted bigWig kept as its windows' bases (``expect``: too big whole) is decoded a group of blocks at a time
    where they hold one value a base: the same kept values and reads as block by block and as pyBigWig's, with windows
    on a block, blocks outside every window, windows across a block's end (their groups block by block) and a NaN."""
    monkeypatch.setattr(bigwig, "_READ_GROUP", group)
    monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 0.25)
    rng = np.random.default_rng(11)
    sections, windows = [], []
    for chrom, (name, size) in enumerate(CHROMS):  # blocks of 40 bases, touching or apart
        at = 10
        while at + 40 < size:
            values = rng.gamma(0.5, 2.0, 40).astype(np.float32)
            values[rng.random(40) < 0.2] = 0.0
            sections.append((chrom, 3, at, 1, 1, values.tolist()))
            pick = rng.random()
            if pick < 0.6:  # a window on the block; else none (a block outside every window)
                windows.append((name, at))
            elif pick < 0.65:  # a window across the block's end
                windows.append((name, at + 25))
            at += 40 + (0 if rng.random() < 0.5 else int(rng.integers(1, 30)))
    sections[3][5][7] = float("nan")
    windows.append((CHROMS[0][0], sections[3][2]))
    chroms, starts = [w[0] for w in windows], np.array([w[1] for w in windows])
    ends = starts + 40
    path = build_bigwig(tmp_path / "pred.bw", CHROMS, sections)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", len(starts) * 40 * 4 + 64)
    fast, got = kept_as_windows(path, chroms, starts, ends, fast=True)
    slow, want = kept_as_windows(path, chroms, starts, ends, fast=False)
    try:
        assert fast._windows_dense and slow._windows_dense
        assert isinstance(fast._resident, bigwig.WindowedDense) and isinstance(slow._resident, bigwig.WindowedDense)
        np.testing.assert_array_equal(fast._resident.values, slow._resident.values)
        np.testing.assert_array_equal(got, want)
        big = np.finfo(np.float32).max
        np.testing.assert_array_equal(np.clip(got, -big, big), expected(path, chroms, starts, ends))
    finally:
        fast.close()
        slow.close()


def test_windows_kept_from_overlapping_blocks_are_not_kept(tmp_path, monkeypatch):
    """Fixed-step blocks that overlap: not clean, so not kept (read block by block, the later one winning), as
    block by block."""
    sections = [(0, 3, 100, 1, 1, [1.0] * 50), (0, 3, 140, 1, 1, [2.0] * 50), (0, 3, 300, 1, 1, [3.0] * 50)]
    path = build_bigwig(tmp_path / "overlapping.bw", CHROMS, sections)
    monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 0.25)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 3 * 20 * 4 + 64)
    chroms, starts = ["chrA"] * 3, np.array([100, 150, 300])
    for fast in (True, False):
        reader, got = kept_as_windows(path, chroms, starts, starts + 20, fast)
        try:
            assert reader._resident is None and not reader._resident_ok
            np.testing.assert_array_equal(got, expected(path, chroms, starts, starts + 20))
        finally:
            reader.close()


@pytest.fixture
def groups_taken(monkeypatch) -> list:
    """How many blocks each group taken at once (``_base_step_parts``) held, where it was taken so."""
    taken, real = [], BigWigReader._base_step_parts

    def counted(reader, group, *args):
        found = real(reader, group, *args)
        if found is not None:
            taken.append(len(group))
        return found

    monkeypatch.setattr(BigWigReader, "_base_step_parts", counted)
    return taken


def kept_whole(path, fast: bool, told=None):
    """A reader's file decoded whole (``_decode_whole``) after its first block is decoded (a sample for the estimates,
    and the fixed-step header that sends groups of blocks of one value a base the quick way): groups at a time
    (``fast``) or block by block. ``told``: windows given first (``expect``)."""
    reader = BigWigReader(str(path))
    reader._blocks(np.array([0]))
    if told is not None:
        reader.expect(reader.chrom_ids(told[0]), told[1], told[2])
    if not fast:
        reader._fixed_steps = False
    return reader, reader._decode_whole()


def kept_arrays(genome) -> list:
    if genome is None:
        return []
    arrays = [genome.values] if hasattr(genome, "values") else [genome.key, genome.length, genome.value]
    return [type(genome).__name__] + [(a.dtype.str, a.tolist()) for a in arrays]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("group, join_bytes", [(256, 4 << 20), (3, 4 << 20), (256, 600)],
                         ids=["together", "three-a-read", "parts-of-a-read"])
@pytest.mark.parametrize("zeros", [0.3, 0.97], ids=["turns-dense", "intervals"])
def test_a_file_decoded_whole_from_blocks_of_one_value_a_base_equals_block_by_block(
        tmp_path, monkeypatch, groups_taken, endian, group, join_bytes, zeros):
    """A file of blocks of one value a base decoded whole a group at a time (``_base_step_parts``): blocks touching
    or apart on two chromosomes, zeros, -0.0, NaN (kept as 0) and infinities; kept as intervals, or turning into one
    value a base part way (a value on most bases): the same arrays in the same dtypes as block by block, and pyBigWig's
    values."""
    monkeypatch.setattr(bigwig, "_READ_GROUP", group)
    monkeypatch.setattr(bigwig, "_BASE_STEP_JOIN_BYTES", join_bytes)
    rng = np.random.default_rng(17)
    sections = base_sections(rng)
    for _, _, _, _, _, values in sections:
        for k in np.flatnonzero(rng.random(len(values)) < zeros).tolist():
            values[k] = -0.0 if rng.random() < 0.05 else 0.0
    path = build_bigwig(tmp_path / "steps.bw", CHROMS, sections, endian=endian)
    little = build_bigwig(tmp_path / "little.bw", CHROMS, sections)
    fast, fast_genome = kept_whole(path, True)
    assert sum(groups_taken) == len(sections) and max(groups_taken) <= group
    slow, slow_genome = kept_whole(path, False)
    try:
        assert type(fast_genome).__name__ == ("DenseGenome" if zeros < 0.5 else "SparseGenome")
        assert kept_arrays(fast_genome) == kept_arrays(slow_genome)
        chroms, starts, ends = windows(rng)
        fast._resident = fast_genome
        big = np.finfo(np.float32).max
        np.testing.assert_array_equal(np.clip(fast.read(chroms, starts, ends), -big, big),
                                      expected(little, chroms, starts, ends))
    finally:
        fast.close()
        slow.close()


def test_a_file_kept_where_windows_lie_from_blocks_of_one_value_a_base_equals_block_by_block(tmp_path, monkeypatch,
                                                                                            groups_taken):
    """Too big to keep whole, kept as intervals where the run's windows lie (``expect``): the bases the windows
    overlap, as block by block."""
    monkeypatch.setattr(bigwig, "_READ_GROUP", 5)
    monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 0.05)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 2000)
    rng = np.random.default_rng(23)
    sections = base_sections(rng, nan=False)
    for _, _, _, _, _, values in sections:
        for k in np.flatnonzero(rng.random(len(values)) < 0.9).tolist():
            values[k] = 0.0
    path = build_bigwig(tmp_path / "steps.bw", CHROMS, sections)
    told = windows(rng, 40)
    fast, fast_genome = kept_whole(path, True, told)
    assert sum(groups_taken) == len(fast._window_blocks)
    slow, slow_genome = kept_whole(path, False, told)
    try:
        assert fast._windows is not None and not fast._windows_dense
        assert isinstance(fast_genome, bigwig.SparseGenome)
        assert 0 < len(fast_genome.key) < sum(np.count_nonzero(s[5]) for s in sections)  # only where windows lie
        assert kept_arrays(fast_genome) == kept_arrays(slow_genome)
        fast._resident = fast_genome
        np.testing.assert_array_equal(fast.read(*told), expected(path, *told))
    finally:
        fast.close()
        slow.close()


@pytest.mark.parametrize("fault", ["past-its-chromosome", "overlapping"])
def test_blocks_of_one_value_a_base_not_clean_are_not_kept_whole(tmp_path, fault):
    """A block past its chromosome's end, or blocks that overlap: the file is not kept whole, either way (then read
    block by block)."""
    sections = [(0, 3, 100, 1, 1, [1.0] * 50), (0, 3, 150, 1, 1, [2.0] * 50), (1, 3, 0, 1, 1, [3.0] * 50)]
    if fault == "past-its-chromosome":
        sections[2] = (1, 3, CHROMS[1][1] - 20, 1, 1, [3.0] * 50)
    elif fault == "overlapping":
        sections[1] = (0, 3, 140, 1, 1, [2.0] * 50)
    path = build_bigwig(tmp_path / "faulty.bw", CHROMS, sections)
    for fast in (True, False):
        reader, genome = kept_whole(path, fast)
        reader.close()
        assert genome is None


def test_a_file_of_fixed_step_and_other_blocks_decoded_whole_equals_block_by_block(tmp_path, monkeypatch,
                                                                                   groups_taken):
    """Blocks of one value a base among bedGraph, variableStep and step-2 blocks: the reads of the first kind taken at
    once until one that is not, then block by block; the same kept arrays as block by block."""
    monkeypatch.setattr(bigwig, "_READ_GROUP", 4)
    rng = np.random.default_rng(29)
    sections, at = [], 0
    for k in range(40):
        kind = (3, 3, 3, 3, 1, 2, 3, 3)[k % 8]  # (read 4 at a time: every other read all of one value a base)
        values = np.round(rng.gamma(0.5, 2.0, 30)).astype(np.float32)
        values[rng.random(30) < 0.3] = 0.0
        if kind == 1:
            items = [(at + 3 * i, at + 3 * i + 2, float(v)) for i, v in enumerate(values)]
            sections.append((0, 1, 0, 0, 0, items))
            at += 90
        elif kind == 2:
            sections.append((0, 2, 0, 0, 2, [(at + 3 * i, float(v)) for i, v in enumerate(values)]))
            at += 90
        else:
            step = 2 if k % 8 == 6 else 1
            sections.append((0, 3, at, step, 1, values.tolist()))
            at += 30 * step
    path = build_bigwig(tmp_path / "mixed.bw", [("chrA", at + 10), ("chrB", 100)], sections)
    fast, fast_genome = kept_whole(path, True)
    slow, slow_genome = kept_whole(path, False)
    try:
        assert groups_taken and sum(groups_taken) < sum(kind == 3 for _, kind, *_ in sections)
        assert groups_taken == [4] and not fast._base_steps  # (a read not all so: the rest not looked at so again)
        assert fast_genome is not None and kept_arrays(fast_genome) == kept_arrays(slow_genome)
    finally:
        fast.close()
        slow.close()
