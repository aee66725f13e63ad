"""bpnet-lite 0.9 ``.npz`` predictions (profile logits and log counts in two files, regions from --regions)."""

import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.special import gammaln, log_softmax

from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.pipeline import score
from bpnet_eval.sources import inflate
from bpnet_eval.sources.npz import NpzArray, NpzPredictions
from tests.support.cases import make_case
from tests.support.cli import run_cli


def write_bed(path, case):
    path.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
    return path


def expected_mnll(case):
    n = len(case.chrom)
    flat = case.observed.reshape(n, -1)
    logps = log_softmax(case.logits.astype(np.float64).reshape(n, -1), axis=-1)
    return -gammaln(flat.sum(-1) + 1) + gammaln(flat + 1).sum(-1) - (flat * logps).sum(-1)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_predictions_score_like_the_arrays(tmp_path, save):
    case = make_case(tmp_path, layout="nocoords")
    save(tmp_path / "profile.npz", case.logits)
    save(tmp_path / "counts.npz", case.logcounts)
    bed = write_bed(tmp_path / "regions.bed", case)
    result = score(f"{tmp_path / 'profile.npz'},{tmp_path / 'counts.npz'}", [str(p) for p in case.bigwigs], str(bed))
    np.testing.assert_allclose(result.columns["profile_mnll"], expected_mnll(case), rtol=1e-6, atol=1e-8)
    target = np.log1p(case.observed.sum(axis=(1, 2)))
    np.testing.assert_allclose(result.columns["count_log1p_mse"], (target - case.logcounts[:, 0]) ** 2, rtol=1e-6)
    assert result.summary["inputs"]["predictions"]["layout"].startswith("bpnet-lite .npz")


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("dtype,order", [("<f4", "C"), (">f8", "C"), ("<f4", "F"), ("<i2", "C")])
def test_npz_rows_are_read_in_any_order(tmp_path, save, dtype, order):
    rng = np.random.default_rng(7)
    array = np.asarray(rng.normal(size=(37, 2, 11)) * 100, dtype=dtype, order=order)
    save(tmp_path / "profile.npz", array)
    stored = NpzArray(str(tmp_path / "profile.npz"), memory_limit=2**30)
    assert stored.shape == array.shape and stored.dtype == array.dtype and stored.compressed == (save is np.savez_compressed)
    for i, j in [(0, 5), (5, 12), (5, 12), (30, 37), (2, 3), (0, 37), (36, 37), (10, 10), (12, 30)]:
        rows = stored.rows(i, j)
        assert rows.flags.writeable and rows.flags.owndata
        np.testing.assert_array_equal(rows, array[i:j])
        assert rows.dtype == array.dtype
    stored.close()
    np.testing.assert_array_equal(stored.rows(3, 4), array[3:4])  # reopened after close
    stored.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from Linux's /proc")
def test_npz_profile_is_not_held_whole(tmp_path):
    """Reading every batch of a 48 MB profile grows the process's peak memory by about a batch, not the file
    (a memory map's pages, or a loaded compressed array, would add the whole 48 MB)."""
    profile = np.broadcast_to(np.arange(1000, dtype=np.float32) % 17, (12000, 1000)).reshape(12000, 1, 1000)
    for save, name in ((np.savez, "plain"), (np.savez_compressed, "packed")):
        save(tmp_path / f"{name}.npz", profile)
    np.savez(tmp_path / "counts.npz", np.zeros((12000, 1), np.float32))
    script = f"""
import numpy as np
from bpnet_eval.sources.npz import NpzPredictions
def peak_mb():  # this process's own peak RSS (ru_maxrss would carry the forking pytest's over exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
before = peak_mb()
preds = NpzPredictions([{str(tmp_path / "PLACE.npz")!r}, {str(tmp_path / "counts.npz")!r}])
total = 0.0
for i in range(0, preds.n, 250):
    total += float(preds.read(i, min(i + 250, preds.n))[0].sum(dtype=np.float64))
print(total, peak_mb() - before)
"""
    expected = float((np.arange(1000) % 17).sum()) * 12000
    for name in ("plain", "packed"):
        done = subprocess.run([sys.executable, "-c", script.replace("PLACE", name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        total, grown_mb = map(float, done.stdout.split())
        assert total == expected
        assert grown_mb < 12, (name, grown_mb)


def test_damaged_npz_profiles_are_named_errors(tmp_path):
    array = np.random.default_rng(2).normal(size=(4000, 2, 50))
    np.savez_compressed(tmp_path / "crc.npz", array)
    raw = bytearray((tmp_path / "crc.npz").read_bytes())
    central = raw.rindex(b"PK\x01\x02")  # the member's CRC-32 in the central directory, made wrong
    raw[central + 16:central + 20] = bytes(4)
    (tmp_path / "crc.npz").write_bytes(bytes(raw))
    stored = NpzArray(str(tmp_path / "crc.npz"), memory_limit=2**30)
    np.testing.assert_array_equal(stored.rows(0, 20), array[:20])  # the checksum is known at the member's end
    with pytest.raises(InputError, match="crc.npz: the compressed array does not match .* CRC-32"):
        stored.rows(20, 4000)
    np.savez(tmp_path / "cut.npz", array)
    stored = NpzArray(str(tmp_path / "cut.npz"), memory_limit=2**30)
    with open(tmp_path / "cut.npz", "r+b") as handle:
        handle.truncate(stored.offset + 30 * stored.row_bytes)
    np.testing.assert_array_equal(stored.rows(0, 30), array[:30])
    with pytest.raises(InputError, match="cut.npz: the file ends inside rows 29..31"):
        stored.rows(28, 31)
    np.savez_compressed(tmp_path / "bits.npz", np.random.default_rng(1).normal(size=(400, 2, 50)))
    raw = bytearray((tmp_path / "bits.npz").read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = bytes(range(64))  # the deflate stream damaged mid-way
    (tmp_path / "bits.npz").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="bits.npz: the compressed array (is damaged|does not match)"):
        NpzArray(str(tmp_path / "bits.npz"), memory_limit=2**30).rows(0, 400)
    np.savez_compressed(tmp_path / "short.npz", array)
    raw = (tmp_path / "short.npz").read_bytes()
    stored = NpzArray(str(tmp_path / "short.npz"), memory_limit=2**30)
    (tmp_path / "short.npz").write_bytes(raw[:len(raw) // 2])  # cut after it was opened
    with pytest.raises(InputError, match="short.npz: the file ends inside its compressed array"):
        stored.rows(0, 4000)


def test_compressed_rows_behind_are_inflated_from_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(inflate, "CHECKPOINT_BYTES", 64 << 10)
    monkeypatch.setattr(inflate, "PIECE_BYTES", 16 << 10)
    monkeypatch.setattr(inflate, "_CHECKPOINTS", inflate.OrderedDict())
    array = np.random.default_rng(3).normal(size=(3000, 2, 40)).astype(np.float32)  # 960 kB
    np.savez_compressed(tmp_path / "p.npz", array)
    stored = NpzArray(str(tmp_path / "p.npz"), memory_limit=2**30)
    for i in range(0, 3000, 256):
        np.testing.assert_array_equal(stored.rows(i, min(i + 256, 3000)), array[i:i + 256])
    (points,) = inflate._CHECKPOINTS.values()
    assert len(points) >= 12 and all(b - a >= 64 << 10 for a, b in zip(sorted(points), sorted(points)[1:]))
    stored.close()
    reads = []
    real_pread = os.pread
    monkeypatch.setattr(inflate.os, "pread", lambda fd, n, at: reads.append(n) or real_pread(fd, n, at))
    again = NpzArray(str(tmp_path / "p.npz"), memory_limit=2**30)  # reopened: the checkpoints are the file's
    for i in (2500, 40, 1700, 1700, 2999):
        np.testing.assert_array_equal(again.rows(i, i + 1), array[i:i + 1])
    assert sum(reads) < 6 * (64 << 10) + 6 * (16 << 10)  # each read inflated from its checkpoint, not the start
    assert len(inflate._CHECKPOINTS) == 1
    np.savez_compressed(tmp_path / "p.npz", array[::-1])  # rewritten: its old checkpoints are not used
    np.testing.assert_array_equal(NpzArray(str(tmp_path / "p.npz"), memory_limit=2**30).rows(2500, 2501),
                                  array[::-1][2500:2501])


@pytest.mark.slow
def test_cli_scores_npz_and_refuses_pickles_and_single_files(tmp_path):
    case = make_case(tmp_path, layout="nocoords")
    np.savez(tmp_path / "profile.npz", case.logits)
    np.savez(tmp_path / "counts.npz", case.logcounts)
    bed = write_bed(tmp_path / "regions.bed", case)
    ok = run_cli("score", f"{tmp_path / 'profile.npz'},{tmp_path / 'counts.npz'}", *case.bigwigs, "--regions", bed,
                 "--out", tmp_path / "report", "-q", "--no-plots")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["metrics"]["profile_mnll"]["mean"] == pytest.approx(expected_mnll(case).mean(), rel=1e-6)
    # an object array inside the .npz is pickled data: refused, never loaded
    with zipfile.ZipFile(tmp_path / "evil.npz", "w") as archive:
        with archive.open("arr_0.npy", "w") as member:
            np.lib.format.write_array(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = run_cli("score", f"{tmp_path / 'evil.npz'},{tmp_path / 'counts.npz'}", *case.bigwigs, "--regions", bed,
                  "--out", tmp_path / "bad")
    assert bad.returncode == 3 and "pickled data" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    single = run_cli("score", tmp_path / "profile.npz", *case.bigwigs, "--regions", bed, "--out", tmp_path / "one")
    assert single.returncode == 2 and "two files" in single.stderr


def test_npz_errors(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        NpzPredictions([str(tmp_path / "text.npz"), str(tmp_path / "text.npz")])
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 4)), b=np.zeros(3))
    with pytest.raises(InputError, match="not one 'arr_0'"):
        NpzPredictions([str(tmp_path / "two.npz"), str(tmp_path / "two.npz")])
    np.savez(tmp_path / "p.npz", np.zeros((3, 2, 4), np.float32))
    np.savez(tmp_path / "c.npz", np.zeros((5, 1), np.float32))
    with pytest.raises(InputError, match="log counts have shape"):
        NpzPredictions([str(tmp_path / "p.npz"), str(tmp_path / "c.npz")])
    np.savez_compressed(tmp_path / "big.npz", np.zeros((64, 2, 100), np.float32, order="F"))
    with pytest.raises(InputError, match="in Fortran order is read whole and does not fit in memory"):
        NpzPredictions([str(tmp_path / "big.npz"), str(tmp_path / "c.npz")], memory_limit=1000)
    np.savez_compressed(tmp_path / "big.npz", np.zeros((64, 2, 100), np.float32))  # C order: read in batches
    np.savez(tmp_path / "c64.npz", np.zeros((64, 1), np.float32))
    preds = NpzPredictions([str(tmp_path / "big.npz"), str(tmp_path / "c64.npz")], memory_limit=1000)
    np.testing.assert_array_equal(preds.read(60, 64)[0], np.zeros((4, 2, 100), np.float32))
    with pytest.raises(UsageError, match="two files"):
        score(f"{tmp_path / 'p.npz'}", np.zeros((3, 2, 4)))


def test_two_readers_of_one_compressed_file_in_threads(tmp_path, monkeypatch):
    """Readers of one file share its checkpoints (an ensemble given the same file twice, threads reading ahead)."""
    monkeypatch.setattr(inflate, "CHECKPOINT_BYTES", 32 << 10)
    monkeypatch.setattr(inflate, "PIECE_BYTES", 8 << 10)
    monkeypatch.setattr(inflate, "_CHECKPOINTS", inflate.OrderedDict())
    array = np.random.default_rng(4).normal(size=(2000, 2, 30)).astype(np.float32)
    np.savez_compressed(tmp_path / "p.npz", array)

    def read_all(order):
        stored = NpzArray(str(tmp_path / "p.npz"), memory_limit=2**30)
        for i in order:
            np.testing.assert_array_equal(stored.rows(i, i + 100), array[i:i + 100])
        stored.close()

    orders = [range(0, 1900, 50), range(1850, -1, -75)]
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(read_all, order) for order in orders * 3]:
            done.result()


@pytest.mark.parametrize("library", ["zlib-ng", "zlib"])
def test_compressed_rows_by_either_inflater(tmp_path, monkeypatch, library):
    """zlib-ng (the dependency) and the standard library's zlib (its fallback) inflate the same bytes, checkpoints
    included."""
    import zlib

    from bpnet_eval.sources import deflate

    if library == "zlib":
        monkeypatch.setattr(inflate, "raw_inflater", lambda: zlib.decompressobj(-zlib.MAX_WBITS))
    else:
        assert type(deflate.raw_inflater()).__module__.startswith("zlib_ng")
    monkeypatch.setattr(inflate, "CHECKPOINT_BYTES", 16 << 10)
    monkeypatch.setattr(inflate, "_CHECKPOINTS", inflate.OrderedDict())
    array = np.random.default_rng(5).normal(size=(900, 2, 25)).astype(np.float32)
    np.savez_compressed(tmp_path / "p.npz", array)
    stored = NpzArray(str(tmp_path / "p.npz"), memory_limit=2**30)
    for i, j in [(0, 300), (300, 900), (450, 451), (10, 20), (899, 900)]:
        np.testing.assert_array_equal(stored.rows(i, j), array[i:j])
    stored.close()


def test_an_npz_compressed_otherwise_is_named(tmp_path):
    """A zip member compressed with LZMA (zipfile can write it; numpy never does) is refused when read, by name."""
    array = np.arange(60, dtype=np.float32).reshape(3, 2, 10)
    with zipfile.ZipFile(tmp_path / "lzma.npz", "w", zipfile.ZIP_LZMA) as archive:
        with archive.open("arr_0.npy", "w") as member:
            np.lib.format.write_array(member, array)
    stored = NpzArray(str(tmp_path / "lzma.npz"), memory_limit=2**30)
    assert stored.shape == (3, 2, 10) and stored.compressed
    with pytest.raises(InputError, match=r"lzma.npz: 'arr_0.npy' is compressed in a way numpy never writes"):
        stored.rows(0, 3)
