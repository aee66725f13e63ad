"""Compressed, chunked HDF5 datasets read chunk by chunk (``sources.chunks``), checked against h5py (HDF5's own
reading of the same file) value for value: every filter combination and chunk shape it takes, the ones it leaves
to h5py, chunks HDF5 stored unfiltered, chunks never written, damaged chunks, and reading after a fork."""

import multiprocessing
import os
import zlib

import h5py
import numpy as np
import pytest

from bpnet_eval.errors import InputError
from bpnet_eval.input_files import read_runs
from bpnet_eval.inputs import open_inputs
from bpnet_eval.options import Job
from bpnet_eval.pipeline import score
from bpnet_eval.sources import chunks
from bpnet_eval.sources.chunks import chunk_filters, rows_reader, unshuffle
from bpnet_eval.sources.deflate import INFLATE_ERRORS, inflate_sized
from bpnet_eval.sources.predictions import StoredRows
from bpnet_eval.environment import fork_is_safe
from bpnet_eval.workers import ProcessReadAhead
from tests.support.cases import make_case
from tests.support.processes import alive


def dataset(tmp_path, data, name="x.h5", **options):
    """``data`` written to a new file with h5py's ``create_dataset`` options; the open dataset."""
    path = tmp_path / name
    with h5py.File(path, "w") as h5:
        h5.create_dataset("d", data=data, **options)
    return h5py.File(path, "r")["d"]


def random_data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        values = rng.gamma(0.4, 2.0, shape) * (rng.random(shape) < 0.3)  # mostly zeros, as profiles are
        return values.astype(dtype)
    return rng.integers(0, 50, shape).astype(dtype)


def batches_in_order(n, size):
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def assert_rows_as_h5py(read, ds, bounds):
    """Each ``read(i, j)`` equals h5py's ``ds[i:j]`` (in native byte order), and so does ``read(i, j, out)`` into an
    array given (C-contiguous, as a reading process's slot, or a strided view), which it fills and returns."""
    for i, j in bounds:
        got, want = read(i, j), ds[i:j]
        assert got.shape == want.shape and got.dtype == want.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, want)
        for out in (np.full(want.shape, 7, got.dtype), np.full((len(want), 2, *want.shape[1:]), 7, got.dtype)[:, 1]):
            assert read(i, j, out) is out
            np.testing.assert_array_equal(out, want)


def assert_reads_like_h5py(ds, bounds):
    read = rows_reader(ds)
    assert read.direct
    try:
        assert_rows_as_h5py(read, ds, bounds)
    finally:
        read.close()


@pytest.mark.parametrize("shape, chunk", [
    ((203, 2, 37), (11, 1, 8)),     # edge chunks along every axis
    ((203, 2, 37), True),           # h5py's automatic chunks (chrombpnet's files)
    ((150, 64), (150, 16)),         # one row of chunks holds every region
    ((97, 40, 2), (5, 40, 2)),      # (N, L, S), whole trailing axes
    ((64, 3, 20), (1, 3, 20)),      # one region per chunk
])
@pytest.mark.parametrize("dtype", ["<f4", "<f8", ">f8", "<i4", ">u2"])
@pytest.mark.parametrize("options", [{"compression": "gzip"}, {"compression": "gzip", "shuffle": True},
                                     {"compression": "gzip", "compression_opts": 9}])
def test_every_batch_reads_as_h5py_reads_it(tmp_path, shape, chunk, dtype, options):
    ds = dataset(tmp_path, random_data(shape, dtype), chunks=chunk, dtype=dtype, **options)
    n = shape[0]
    assert_reads_like_h5py(ds, batches_in_order(n, 17) + batches_in_order(n, 64) + [(0, n), (n - 1, n)])


def test_reads_in_any_order_and_single_rows(tmp_path):
    ds = dataset(tmp_path, random_data((300, 2, 30), "<f4"), chunks=(23, 2, 7), compression="gzip")
    rng = np.random.default_rng(1)
    starts = rng.integers(0, 299, 40)
    assert_reads_like_h5py(ds, [(int(i), int(min(300, i + rng.integers(1, 60)))) for i in starts] +
                           [(int(i), int(i) + 1) for i in starts])


def test_read_runs_reads_pieces_stored_one_after_another_together():
    """``input_files.read_runs``: pieces in the order given; one read per run of pieces stored one after another in
    that order, broken by a gap, by a piece stored before the last, and at the byte limit."""
    data = bytes(range(256)) * 4
    calls = []

    def read(offset, size):
        calls.append((offset, size))
        return data[offset:offset + size]

    offsets, sizes = [0, 10, 15, 40, 30, 35, 50], [10, 5, 5, 10, 5, 5, 30]
    pieces = read_runs(read, offsets, sizes, limit=25)
    assert [bytes(p) for p in pieces] == [data[o:o + n] for o, n in zip(offsets, sizes)]
    assert calls == [(0, 20), (40, 10), (30, 10), (50, 30)]  # a run up to the limit (0-20), then apart
    calls.clear()
    read_runs(read, offsets[:3], sizes[:3], limit=12)
    assert calls == [(0, 10), (10, 10)]


@pytest.mark.parametrize("threads", [1, 3])
def test_chunks_stored_apart_or_together_read_by_as_few_preads_as_fit(tmp_path, monkeypatch, threads):
    """Chunks stored one after another in the file are read by one ``pread`` (up to ``MAX_READ_BYTES``), chunks
    written out of order (so stored apart from the next one a read needs) by one each: the same values either way,
    one region per chunk as a writer appending region by region leaves them."""
    data = random_data((120, 2, 40), "<f4")
    path = tmp_path / "order.h5"
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("d", shape=data.shape, dtype="<f4", chunks=(1, 2, 40), compression="gzip")
        for k in [*range(60, 120), *range(59, -1, -1)]:  # the second half first, then the first half backwards
            ds[k] = data[k]
    ds = h5py.File(path, "r")["d"]
    reads = []
    real_pread = os.pread
    monkeypatch.setattr(chunks.os, "pread", lambda fd, n, at: reads.append(n) or real_pread(fd, n, at))
    reader = chunks.ChunkRows(ds, chunk_filters(ds), threads)
    np.testing.assert_array_equal(reader.read(60, 120), data[60:120])
    assert len(reads) <= threads  # stored in order of the read: one pread per thread's run
    reads.clear()
    np.testing.assert_array_equal(reader.read(0, 60), data[0:60])
    assert len(reads) == 60  # each stored after the next one: apart
    monkeypatch.setattr(chunks, "MAX_READ_BYTES", max(ds.id.get_chunk_info(k).size for k in range(120)) * 2)
    reads.clear()
    np.testing.assert_array_equal(reader.read(60, 120), data[60:120])
    assert len(reads) >= 30 and max(reads) <= chunks.MAX_READ_BYTES
    reader.close()


@pytest.mark.parametrize("options", [
    {},                                               # contiguous
    {"chunks": (10, 2, 5)},                           # chunked, no filter
    {"chunks": (10, 2, 5), "compression": "lzf"},
    {"chunks": (10, 2, 5), "compression": "gzip", "fletcher32": True},
    {"chunks": (10, 2, 5), "scaleoffset": 3},
])
def test_other_layouts_are_left_to_h5py(tmp_path, options):
    data = random_data((40, 2, 20), "<f4")
    ds = dataset(tmp_path, data, **options)
    assert chunk_filters(ds) is None
    read = rows_reader(ds)
    assert not read.direct
    np.testing.assert_array_equal(read(3, 29), ds[3:29])  # (scaleoffset is lossy: as h5py reads it)


@pytest.mark.parametrize("shape, options", [
    ((203, 2, 37), {}),                          # contiguous
    ((203, 2, 37), {"chunks": (11, 2, 37)}),     # chunks of whole rows, an edge chunk
    ((203, 2, 37), {"chunks": (256, 2, 37), "maxshape": (None, 2, 37)}),  # one chunk taller than the dataset
    ((97, 40, 2), {"chunks": (1, 40, 2)}),       # one region per chunk, (N, L, S)
    ((300, 1), {"chunks": (65536, 1), "maxshape": (None, 1)}),  # log counts in one tall chunk
    ((150,), {"chunks": (7,)}),                  # one value per row
])
@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<i4", "|u1"])
def test_uncompressed_rows_are_read_in_place_as_h5py_reads_them(tmp_path, shape, options, dtype):
    """An uncompressed dataset stored contiguously or in chunks of whole rows is read by ``preadv`` at HDF5's
    addresses (``PlainRows``), to h5py's values, for batches in order, out of order and single rows."""
    ds = dataset(tmp_path, random_data(shape, dtype), dtype=dtype, **options)
    read = rows_reader(ds)
    assert read.plain and not read.direct
    n = shape[0]
    rng = np.random.default_rng(3)
    starts = rng.integers(0, n - 1, 20)
    bounds = batches_in_order(n, 17) + batches_in_order(n, 64) + [(0, n), (n - 1, n), (5, 5)] + \
        [(int(i), int(min(n, i + rng.integers(1, 80)))) for i in starts]
    try:
        assert_rows_as_h5py(read, ds, bounds)
    finally:
        read.close()


@pytest.mark.parametrize("options", [
    {"chunks": (10, 2, 5)},                      # chunks that split a row
    {"chunks": (10, 2, 20), "dtype": ">f4"},     # another byte order
    {"chunks": (10, 2, 20), "compression": "lzf"},
    {"chunks": (10, 2, 20), "fletcher32": True},
])
def test_layouts_plainrows_does_not_read_are_left_to_h5py(tmp_path, options):
    data = random_data((40, 2, 20), "<f4")
    ds = dataset(tmp_path, data, **options)
    assert chunks.plain_layout(ds) is None
    read = rows_reader(ds)
    assert not read.plain
    np.testing.assert_array_equal(read(3, 29), ds[3:29])
    read.close()


def test_plain_rows_never_written_or_behind_a_user_block_read_as_hdf5_reads_them(tmp_path):
    """Chunks never written have no address: those reads go to h5py (the fill value); a file with a user block is
    left to h5py whole (its addresses are relative to the block's end)."""
    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as h5:
        d = h5.create_dataset("d", shape=(60, 2, 8), dtype="<f4", chunks=(10, 2, 8), fillvalue=-7.5)
        d[0:10], d[30:40] = 1.0, 2.0  # chunks 1, 2, 4 and 5 never written
    ds = h5py.File(path, "r")["d"]
    read = rows_reader(ds)
    assert read.plain
    for i, j in ((0, 10), (5, 35), (10, 20), (0, 60), (38, 41)):
        np.testing.assert_array_equal(read(i, j), ds[i:j])
    read.close()
    path = tmp_path / "userblock.h5"
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5.create_dataset("d", data=random_data((30, 4), "<f8"))
    ds = h5py.File(path, "r")["d"]
    assert chunks.plain_layout(ds) is None
    read = rows_reader(ds)
    np.testing.assert_array_equal(read(2, 25), ds[2:25])
    read.close()


def test_a_short_plain_read_is_read_by_h5py(tmp_path, monkeypatch):
    """A ``preadv`` that gives fewer bytes than asked (a file cut short under the run) sends the read to h5py, which
    gives its values or its error."""
    data = random_data((120, 2, 50), "<f4")
    ds = dataset(tmp_path, data, chunks=(16, 2, 50))
    read = rows_reader(ds)
    assert read.plain
    calls = []

    def short(fd, buffers, offset):
        calls.append(offset)
        return 0

    monkeypatch.setattr(chunks.os, "preadv", short)
    np.testing.assert_array_equal(read(10, 90), data[10:90])
    assert calls  # tried in place first
    read.close()


def test_a_row_of_chunks_above_the_memory_bound_is_left_to_h5py(tmp_path, monkeypatch):
    ds = dataset(tmp_path, random_data((40, 2, 20), "<f8"), chunks=(10, 2, 20), compression="gzip")
    monkeypatch.setattr(chunks, "MAX_CHUNK_ROW_BYTES", 10 * 2 * 20 * 8 - 1)
    assert chunk_filters(ds) is None
    monkeypatch.setattr(chunks, "MAX_CHUNK_ROW_BYTES", 10 * 2 * 20 * 8)
    assert chunk_filters(ds) == (h5py.h5z.FILTER_DEFLATE,)


def test_a_chunk_index_beyond_its_bound_is_not_kept_and_hdf5_gives_each_chunk(tmp_path, monkeypatch):
    """Over ``MAX_INDEXED_CHUNKS`` chunks, no index is listed (``chunk_index``: None) and each chunk's stored bytes
    come from ``read_direct_chunk``; below it, the index holds every chunk's place as HDF5 lists it."""
    ds = dataset(tmp_path, random_data((64, 3, 20), "<f4"), chunks=(1, 3, 10), compression="gzip")
    index, fd = chunks.chunk_index(ds)
    try:
        listed = []
        ds.id.chunk_iter(listed.append)
        assert len(listed) == 128 and index.grid == (64, 1, 2)
        masks, offsets, sizes = index.locate([info.chunk_offset for info in listed])
        assert offsets == [info.byte_offset for info in listed] and sizes == [info.size for info in listed]
        assert masks == [info.filter_mask for info in listed]
    finally:
        os.close(fd)
    monkeypatch.setattr(chunks, "MAX_INDEXED_CHUNKS", 127)
    monkeypatch.setattr(chunks, "INDEX_BLOCK", 5)  # (entered a few at a time below the bound)
    assert chunks.chunk_index(ds) == (None, None)
    assert_reads_like_h5py(ds, batches_in_order(64, 9) + [(0, 64), (63, 64)])
    monkeypatch.setattr(chunks, "MAX_INDEXED_CHUNKS", 128)
    index, fd = chunks.chunk_index(ds)
    os.close(fd)
    assert index.locate([(63, 0, 10)])[1] == [listed[-1].byte_offset]


def test_unshuffle_inverts_hdf5s_byte_shuffle():
    values = np.arange(12, dtype="<u4") * 0x01020304
    shuffled = values.view(np.uint8).reshape(-1, 4).T.tobytes()
    assert bytes(unshuffle(shuffled, 4)) == values.tobytes()
    assert bytes(unshuffle(shuffled + b"xy", 4)) == values.tobytes() + b"xy"  # a partial element stays at the end
    assert bytes(unshuffle(b"abc", 1)) == b"abc"
    wide = np.arange(1001, dtype="<u8") * 0x0102030405060708
    assert bytes(unshuffle(wide.view(np.uint8).reshape(-1, 8).T.tobytes(), 8)) == wide.tobytes()


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_chunk_stored_without_a_filter_reads_as_hdf5_reads_it(tmp_path, shuffle):
    """HDF5 skips an optional filter where it did not help a chunk and marks it in the chunk's filter mask."""
    data = random_data((30, 2, 10), "<f4")
    path = tmp_path / "mask.h5"
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("d", data=data, chunks=(10, 2, 10), compression="gzip", shuffle=shuffle)
        deflate_bit = 1 << (1 if shuffle else 0)  # the pipeline is (shuffle, deflate) or (deflate,)
        raw = data[10:20].tobytes()
        if shuffle:  # shuffled but not deflated
            raw = np.frombuffer(raw, np.uint8).reshape(-1, 4).T.tobytes()
        ds.id.write_direct_chunk((10, 0, 0), raw, deflate_bit)
    ds = h5py.File(path, "r")["d"]
    assert ds.id.read_direct_chunk((10, 0, 0))[0] == deflate_bit
    np.testing.assert_array_equal(ds[:], data)
    assert_reads_like_h5py(ds, batches_in_order(30, 7))


@pytest.mark.parametrize("extra", [-8, 8])
def test_a_chunk_that_inflates_to_another_size_reads_as_hdf5_reads_it(tmp_path, extra):
    """A stored stream that inflates to fewer or more bytes than a chunk holds (libdeflate inflates into a buffer of
    the chunk's size) is left to h5py, whose values are HDF5's own (it pads a short chunk, cuts a long one)."""
    data = random_data((30, 2, 10), "<f4")
    path = tmp_path / "sizes.h5"
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("d", data=data, chunks=(10, 2, 10), compression="gzip")
        raw = data[10:20].tobytes()
        raw = raw[:len(raw) + extra] if extra < 0 else raw + b"\x01" * extra
        ds.id.write_direct_chunk((10, 0, 0), zlib.compress(raw), 0)
    ds = h5py.File(path, "r")["d"]
    assert_reads_like_h5py(ds, batches_in_order(30, 7))
    if extra > 0:
        np.testing.assert_array_equal(ds[:], data)


def test_inflate_sized_gives_zlibs_bytes_and_never_a_cut_chunk():
    raw = random_data((64, 2, 100), "<f8").tobytes()
    stored = zlib.compress(raw, 4)
    assert bytes(inflate_sized(stored, len(raw))) == zlib.decompress(stored) == raw
    assert bytes(inflate_sized(stored, len(raw) + 100)) == raw
    try:  # a stream longer than the size given: an error (libdeflate) or all of it (ISA-L), never its first bytes
        longer = inflate_sized(stored, len(raw) - 1)
    except INFLATE_ERRORS:
        longer = raw
    assert bytes(longer) == raw

def test_chunks_never_written_read_as_the_fill_value(tmp_path):
    path = tmp_path / "sparse.h5"
    data = random_data((40, 2, 10), "<f4")
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("d", shape=data.shape, dtype="<f4", chunks=(10, 2, 10), compression="gzip",
                               fillvalue=-3.0)
        ds[0:10], ds[30:40] = data[0:10], data[30:40]
    ds = h5py.File(path, "r")["d"]
    read = rows_reader(ds)
    got = np.concatenate([read(i, j) for i, j in batches_in_order(40, 8)])
    np.testing.assert_array_equal(got, ds[:])
    assert (got[10:30] == -3.0).all()
    read.close()


def damage_first_chunk(path, dataset_name, index=0):
    """Overwrite the middle of the stored chunk ``index`` (in HDF5's listing; the first by default) of
    ``dataset_name`` with bytes that do not inflate."""
    with h5py.File(path, "r") as h5:
        info = h5[dataset_name].id.get_chunk_info(index)
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset + 2)
        handle.write(b"\xff" * max(1, info.size - 4))


def gzip_predictions(case, path, dtype="<f4", **options):
    """``case``'s predictions written again with their logits gzip-compressed in chunks of 8 regions (``options``:
    more ``create_dataset`` options); the path."""
    with h5py.File(case.predictions, "r") as source, h5py.File(path, "w") as out:
        for name in ("coords/coords_chrom", "coords/coords_start", "coords/coords_end", "predictions/logcounts"):
            source.copy(name, out, name)
        logits = source["predictions/logits"][:]
        out.create_dataset("predictions/logits", data=logits.astype(dtype), chunks=(8, *logits.shape[1:]),
                           compression="gzip", **options)
    return path


def test_a_damaged_chunk_is_an_error_naming_the_file_and_the_regions(tmp_path):
    case = make_case(tmp_path, n=30)
    gz = gzip_predictions(case, tmp_path / "gz.h5")
    damage_first_chunk(gz, "predictions/logits")
    with pytest.raises(InputError) as caught:
        score(str(gz), [str(p) for p in case.bigwigs])
    message = str(caught.value)
    assert str(gz) in message and "regions 1.." in message and "damaged" in message


def test_compressed_predictions_and_truth_score_as_the_uncompressed_files(tmp_path):
    """The same numbers, bit for bit, from a gzip-compressed copy of the predictions (odd chunks, shuffle) and
    of the observed counts as an HDF5 truth, in batches that end inside rows of chunks."""
    case = make_case(tmp_path, n=70, length=40)
    gz = tmp_path / "gz.h5"
    with h5py.File(case.predictions, "r") as source, h5py.File(gz, "w") as out:
        for name in ("coords/coords_chrom", "coords/coords_start", "coords/coords_end"):
            source.copy(name, out, name)
        out.create_dataset("predictions/logits", data=source["predictions/logits"][:], chunks=(9, 1, 11),
                           compression="gzip", shuffle=True)
        out.create_dataset("predictions/logcounts", data=source["predictions/logcounts"][:], chunks=(16, 1),
                           compression="gzip")
    truth = tmp_path / "truth.h5"
    for path, options in ((truth, {}), (tmp_path / "truth_gz.h5", {"chunks": (6, 2, 40), "compression": "gzip"})):
        with h5py.File(path, "w") as h5:
            h5.create_dataset("observed", data=case.observed.astype(np.float32), **options)
    plain = score(str(case.predictions), str(truth), batch_size=16, truth_dataset="observed")
    compressed = score(str(gz), str(tmp_path / "truth_gz.h5"), batch_size=16, truth_dataset="observed")
    assert set(plain.columns) == set(compressed.columns)
    for name, values in plain.columns.items():
        np.testing.assert_array_equal(compressed.columns[name], values, err_msg=name)


def test_a_forked_process_reads_with_threads_of_its_own(tmp_path):
    """The reading processes are forked: a reader whose threads were made in the parent makes new ones."""
    data = random_data((60, 2, 12), "<f4")
    ds = dataset(tmp_path, data, chunks=(7, 2, 5), compression="gzip")
    read = rows_reader(ds)
    np.testing.assert_array_equal(read(0, 20), data[0:20])  # the parent's threads exist now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def child():
        queue.put([read(i, j).tolist() for i, j in ((20, 41), (41, 60))])

    process = context.Process(target=child)
    process.start()
    got = queue.get(timeout=60)
    process.join(60)
    assert process.exitcode == 0
    np.testing.assert_array_equal(np.concatenate([np.asarray(g, np.float32) for g in got]), data[20:60])
    read.close()


def test_chunks_are_read_at_hdf5s_addresses_unless_a_user_block_shifts_them(tmp_path):
    """A plain file's chunks are read by ``pread`` at the addresses HDF5's chunk index lists; a file with a user
    block (HDF5's addresses are then relative to its end) is read through HDF5, to the same values."""
    data = random_data((90, 2, 30), "<f8")
    for name, options in (("plain.h5", {}), ("userblock.h5", {"userblock_size": 512})):
        path = tmp_path / name
        with h5py.File(path, "w", **options) as h5:
            h5.create_dataset("d", data=data, chunks=(13, 1, 8), compression="gzip", shuffle=True)
        ds = h5py.File(path, "r")["d"]
        reader = chunks.ChunkRows(ds, chunk_filters(ds), 2)
        got = np.concatenate([reader.read(i, j) for i, j in batches_in_order(90, 20)])
        np.testing.assert_array_equal(got, data)
        assert (reader._fd is None) == bool(options), name
        reader.close()


@pytest.mark.skipif(not fork_is_safe(), reason="reading processes need fork on Linux, no threads")
@pytest.mark.parametrize("dtype, options", [("<f4", {}), (">f8", {"shuffle": True})])
def test_compressed_predictions_are_inflated_by_a_reading_process_to_the_same_numbers(tmp_path, dtype, options):
    """Where reading processes read ahead, a gzip-compressed profile is inflated by one of them (its rows as
    stored, in shared memory of the stored type), not by threads of the process that computes: every column is
    the one read in-process; one process however many read the observed tracks (batches shared out among several
    would each inflate the rows of chunks at their edges); an uncompressed profile is read in-process, and the
    process stops with the run."""
    case = make_case(tmp_path, n=300)
    gz = gzip_predictions(case, tmp_path / "gz.h5", dtype, **options)
    bigwigs = [str(p) for p in case.bigwigs]
    with open_inputs(Job.of(str(gz), bigwigs, batch_size=64, read_workers=2)) as inputs:
        ahead = inputs.preds._ahead
        assert isinstance(ahead, ProcessReadAhead) and isinstance(ahead.source, StoredRows) and ahead.workers == 1
        assert ahead._slots.dtype == np.dtype(dtype).newbyteorder("=")
        logits = np.concatenate([batch[2][0] for batch in inputs.batches()])
        pids = list(ahead._pids)
    assert inputs.preds._ahead is None and not any(alive(pid) for pid in pids)
    with h5py.File(gz, "r") as h5:
        np.testing.assert_array_equal(logits, h5["predictions/logits"][:])
    with open_inputs(Job.of(str(case.predictions), bigwigs, batch_size=64, read_workers=1)) as inputs:
        assert inputs.preds._ahead is None
    beside = score(str(gz), bigwigs, batch_size=64, read_workers=1, device="cpu")
    alone = score(str(gz), bigwigs, batch_size=64, read_workers=0, device="cpu")
    assert beside.columns.keys() == alone.columns.keys()
    for name, values in alone.columns.items():
        np.testing.assert_array_equal(beside.columns[name], values, err_msg=name)


@pytest.mark.skipif(not fork_is_safe(), reason="reading processes need fork on Linux, no threads")
def test_a_compressed_positions_first_counts_profile_read_ahead_gives_each_batch_its_own_logits(tmp_path):
    """basepairmodels' counts-scale ``pred_profs`` ``(N, L, S)``, float64 gzip: inflated by a reading process, each
    batch reordered to ``(b, S, L)`` out of its shared memory into an array of its own (every batch held to the end
    keeps its numbers: none is a view of memory the next batch takes), the log of the stored values (float64
    numpy, written here), and every column the one read in-process."""
    case = make_case(tmp_path, n=300)
    with h5py.File(case.predictions, "r") as source:
        logits = source["predictions/logits"][:].astype(np.float64)
        windows = {name: source[name][:] for name in ("coords/coords_chrom", "coords/coords_start",
                                                      "coords/coords_end")}
        logcounts = source["predictions/logcounts"][:].reshape(len(logits), -1)
    values = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True) * np.exp(logcounts)[:, :, None]
    path = tmp_path / "basepairmodels.h5"
    with h5py.File(path, "w") as h5:
        for name, data in windows.items():
            h5.create_dataset(name, data=data)
        h5.create_dataset("predictions/pred_profs", data=values.transpose(0, 2, 1), chunks=(16, 40, 1),
                          compression="gzip")
        h5.create_dataset("predictions/pred_logcounts", data=np.repeat(logcounts, logits.shape[1], axis=1))
    bigwigs = [str(p) for p in case.bigwigs]
    with open_inputs(Job.of(str(path), bigwigs, batch_size=64, read_workers=2)) as inputs:
        assert isinstance(inputs.preds._ahead, ProcessReadAhead)
        held = [batch[2][0] for batch in inputs.batches()]
    assert all(batch.flags.owndata and batch.flags.c_contiguous for batch in held)
    np.testing.assert_array_equal(np.concatenate(held), np.log(values))
    beside = score(str(path), bigwigs, batch_size=64, read_workers=1, device="cpu")
    alone = score(str(path), bigwigs, batch_size=64, read_workers=0, device="cpu")
    assert beside.columns.keys() == alone.columns.keys()
    for name, got in alone.columns.items():
        np.testing.assert_array_equal(beside.columns[name], got, err_msg=name)


@pytest.mark.skipif(not fork_is_safe(), reason="reading processes need fork on Linux, no threads")
def test_a_damaged_chunk_inflated_by_a_reading_process_is_the_same_error(tmp_path):
    case = make_case(tmp_path, n=300)
    gz = gzip_predictions(case, tmp_path / "gz.h5")
    damage_first_chunk(gz, "predictions/logits", index=20)  # rows 161..168: the third batch of 64
    messages = []
    for workers in (1, 0):
        with pytest.raises(InputError) as caught:
            score(str(gz), [str(p) for p in case.bigwigs], batch_size=64, read_workers=workers, device="cpu")
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert str(gz) in messages[0] and "regions 129..192" in messages[0] and "damaged" in messages[0]
