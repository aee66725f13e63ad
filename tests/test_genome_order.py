"""Observed bigWigs read block by block whose windows come out of genome order: a reading process reads them once in
genome order into an unnamed temporary file (``sources.genome_order``) and each batch from there; the counts are
those of the files (pyBigWig's, as written), whichever way they are read."""

import os

import numpy as np
import pytest

from bpnet_eval.inputs import batch_bounds, open_sources
from bpnet_eval.options import Job
from bpnet_eval.pipeline import score
from bpnet_eval.process import private_temp_dir
from bpnet_eval.sources import bigwig, genome_order
from bpnet_eval.sources.genome_order import out_of_order
from tests.support.cases import make_case, write_bigwig


@pytest.fixture
def block_by_block(monkeypatch):
    """Files too big to keep, even where the windows lie: read block by block."""
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 1_000)


def truth_of(predictions, paths):
    """The planned truth source of a job, told every row."""
    preds, _, truth, _ = open_sources(predictions, paths)
    truth.will_read(0, preds.n)
    return preds, truth


def read_batches(truth, n, tracks=None, batch=16, length=50):
    out = np.zeros((n, truth.n_tracks, length), np.float32)
    for i, j in batch_bounds(0, n, batch):
        truth.read_into(i, j, out[i:j], tracks)
    return out


def genome_order_files():
    directory = private_temp_dir()
    return [name for name in os.listdir(directory) if name.startswith("genome-order-")]


def test_out_of_order_counts_the_steps_back():
    keys = np.arange(1000) * 7
    assert not out_of_order(keys) and not out_of_order(keys[:1])
    stepped = keys.copy()
    stepped[500] = 0  # one step back in 999: 0.1%
    assert not out_of_order(stepped)
    assert out_of_order(np.random.default_rng(0).permutation(keys))


def test_windows_out_of_order_are_read_once_in_genome_order(tmp_path, block_by_block):
    """make_case's windows alternate between two chromosomes (a third of the steps go back): each file read block by
    block is read in genome order into a temporary file by ``start_reading``; the batches read from there equal the
    counts written, for both tracks, one track, and a file stored negated (read as magnitudes)."""
    case = make_case(tmp_path, n=200, length=50)
    paths = [str(p) for p in case.bigwigs]
    negated = tmp_path / "minus_negated.bw"
    per_chrom = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
    for i in range(len(case.chrom)):
        per_chrom[case.chrom[i]][case.start[i]:case.end[i]] = -case.observed[i, 1]
    write_bigwig(negated, case.chrom_sizes, per_chrom)
    for files in (paths, [paths[0], str(negated)]):
        preds, truth = truth_of(str(case.predictions), files)
        try:
            truth.start_reading(None, None)
            assert all(reader.reads_blocks() for reader in truth._readers)
            assert sorted(truth._in_genome_order) == [0, 1]
            assert not genome_order_files()  # unnamed: nothing to leave behind
            np.testing.assert_array_equal(read_batches(truth, preds.n), case.observed)
            one = read_batches(truth, preds.n, tracks=[1])
            np.testing.assert_array_equal(one[:, 1], case.observed[:, 1])
        finally:
            truth.close()
            preds.close()
        assert truth._in_genome_order == {}


def test_windows_in_order_or_without_room_are_read_from_the_file(tmp_path, block_by_block, monkeypatch):
    case = make_case(tmp_path, n=120, length=50)
    paths = [str(p) for p in case.bigwigs]
    in_order = np.lexsort((case.start, case.chrom))
    bed = tmp_path / "sorted.bed"
    bed.write_text("".join(f"{case.chrom[k]}\t{case.start[k]}\t{case.end[k]}\n" for k in in_order))
    sorted_truth = Job.of(str(case.predictions), paths, str(bed))
    preds, _, truth, _ = open_sources(sorted_truth.predictions, sorted_truth.truth, sorted_truth.regions,
                                      sorted_truth.read)
    truth.will_read(0, preds.n)
    try:
        truth.start_reading(None, None)
        assert truth._in_genome_order == {}  # in genome order already
        np.testing.assert_array_equal(read_batches(truth, preds.n), case.observed[in_order])
    finally:
        truth.close()
        preds.close()
    monkeypatch.setattr(genome_order, "MAX_BYTES", 100)  # no room
    preds, truth = truth_of(str(case.predictions), paths)
    try:
        truth.start_reading(None, None)
        assert truth._in_genome_order == {}
        np.testing.assert_array_equal(read_batches(truth, preds.n), case.observed)
    finally:
        truth.close()
        preds.close()


def test_scores_through_reading_processes_equal_those_read_here(tmp_path, block_by_block):
    """End to end: the reading processes (one per file, each writing its windows in genome order) give the same
    columns as reading every batch in this process."""
    case = make_case(tmp_path, n=150, length=50)
    paths = [str(p) for p in case.bigwigs]
    alone = score(str(case.predictions), paths, batch_size=16, read_workers=0, device="cpu")
    beside = score(str(case.predictions), paths, batch_size=16, read_workers=2, device="cpu")
    assert beside.columns.keys() == alone.columns.keys()
    for name, values in alone.columns.items():
        np.testing.assert_array_equal(beside.columns[name], values, err_msg=name)


class Windows:
    """A reader whose window at chromosome c, start x holds ``c * 1000 + x + position`` (and counts its reads)."""

    def __init__(self):
        self.calls = []

    def read(self, chrom_ids, starts, ends):
        self.calls.append(np.asarray(chrom_ids) * (1 << 32) + np.asarray(starts))
        width = int(ends[0] - starts[0])
        return (chrom_ids[:, None] * 1000 + starts[:, None] + np.arange(width)).astype(np.float32)


def test_windows_are_written_in_genome_order_and_read_back_by_row(monkeypatch):
    """Rows from ``first`` on, some not written (read as zeros): each window read once, the file in genome order
    (one write per ``WINDOWS`` windows), and any stretch of rows read back with one read per run of rows lying one
    after another in the file."""
    rng = np.random.default_rng(5)
    first, n, width = 7, 300, 13
    rows = first + np.sort(rng.choice(n + 20, n, replace=False))  # rows first.., some missing
    chrom_ids = rng.integers(0, 3, n)
    starts = rng.integers(0, 10_000, n)
    starts[100:160] = np.arange(60) * 50  # rows 100..159 of the windows follow each other in the genome
    chrom_ids[100:160] = 3
    monkeypatch.setattr(genome_order, "WINDOWS", 64)
    reader, writes, reads = Windows(), [], []
    real_write, real_read = os.pwrite, os.preadv
    monkeypatch.setattr(genome_order.os, "pwrite", lambda fd, data, at: writes.append(at) or real_write(fd, data, at))
    monkeypatch.setattr(genome_order.os, "preadv", lambda fd, views, at: reads.append(at) or real_read(fd, views, at))
    written = genome_order.WindowsInGenomeOrder.written(reader, first, rows, chrom_ids, starts, starts + width)
    try:
        keys = np.concatenate(reader.calls)
        assert len(keys) == n and (np.diff(keys) >= 0).all()  # each window read once, in genome order
        assert writes == [a * width * 4 for a in range(0, n, 64)]
        expected = np.zeros((int(rows.max()) + 1, width), np.float32)
        expected[rows] = chrom_ids[:, None] * 1000 + starts[:, None] + np.arange(width)
        place = np.full(int(rows.max()) + 1, -1)
        place[rows[np.argsort((chrom_ids << 32) + starts, kind="stable")]] = np.arange(n)
        last = int(rows.max()) + 1
        for i, j in [(first, first + 1), (first, last), (50, 90), (rows[100], rows[159] + 1), (last - 1, last)]:
            out = np.full((j - i, width), -1.0, np.float32)
            reads.clear()
            written.read_into(i, j, out)
            np.testing.assert_array_equal(out, expected[i:j])
            at = place[i:j].tolist()  # a read starts at each written row not right after the row before it
            runs = sum(p >= 0 and (k == 0 or at[k - 1] < 0 or p != at[k - 1] + 1) for k, p in enumerate(at))
            assert len(reads) == runs  # (rows 100..159: one read)
            tracks = np.full((j - i, 3, width), -1.0, np.float32)  # one track's rows of a batch of three
            reads.clear()
            written.read_into(i, j, tracks[:, 1])
            np.testing.assert_array_equal(tracks[:, 1], expected[i:j])
            assert (tracks[:, [0, 2]] == -1.0).all() and len(reads) == runs
    finally:
        written.close()


@pytest.mark.parametrize("contiguous", [True, False])
def test_rows_read_back_whole_when_each_read_returns_a_few_bytes(monkeypatch, contiguous):
    """A read may return fewer bytes than asked (a signal, a network file system): the next read goes on from
    there, within a row or across rows, until every row is filled."""
    rows, starts, width = np.arange(40), np.random.default_rng(2).permutation(40) * 10, 5  # out of genome order
    written = genome_order.WindowsInGenomeOrder.written(Windows(), 0, rows, np.zeros(40, np.int64), starts,
                                                        starts + width)
    real_read, calls = os.preadv, []

    def short_read(fd, views, at):  # at most 7 bytes, from the first buffers given
        calls.append(len(views))
        total, taken = 0, []
        for view in views:
            taken.append(view[:max(0, min(len(view), 7 - total))])
            total += len(taken[-1])
        return real_read(fd, [v for v in taken if len(v)], at)

    monkeypatch.setattr(genome_order.os, "preadv", short_read)
    try:
        batch = np.full((40, 2, width), -1.0, np.float32)
        out = batch[:, 0, :] if not contiguous else np.full((40, width), -1.0, np.float32)
        written.read_into(0, 40, out)
        np.testing.assert_array_equal(out, starts[:, None] + np.arange(width))
        assert len(calls) >= 40 * width * 4 // 7 and (contiguous or (batch[:, 1] == -1.0).all())
    finally:
        written.close()


def test_a_row_not_written_reads_zeros_beside_rows_that_are():
    """Row 11 is not written and the row after it is the file's first window (its place, 0, follows -1): zeros for
    row 11 only, the others read back."""
    rows, starts = np.array([10, 12, 13]), np.array([300, 100, 200])
    written = genome_order.WindowsInGenomeOrder.written(Windows(), 10, rows, np.zeros(3, np.int64), starts,
                                                        starts + 4)
    try:
        out = np.full((4, 4), -1.0, np.float32)
        written.read_into(10, 14, out)
        np.testing.assert_array_equal(out, [np.arange(300, 304), np.zeros(4), np.arange(100, 104), np.arange(200, 204)])
    finally:
        written.close()
