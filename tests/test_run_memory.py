"""A run's bigWigs share what they keep (``bigwig.share_run_memory``, ``--bigwig-memory-mb``): by default up to four
files keep what each alone would, more files less of each, so that a run's memory does not grow with its tracks; the
counts are the files' either way."""

import pickle

import numpy as np
import pytest

from bpnet_eval.inputs import open_inputs, open_sources
from bpnet_eval.options import BIGWIG_MEMORY_MB, Job, ReadOptions, RunOptions
from bpnet_eval.pipeline import score
from bpnet_eval.sources import bigwig
from bpnet_eval.sources.bigwig import BigWigReader, share_run_memory
from bpnet_eval.sources.intervals import genome_keys
from tests.support.cases import make_case, write_bigwig
from tests.support.cli import run_cli


def test_up_to_four_files_keep_what_one_alone_keeps_and_more_share_the_runs_bytes(tmp_path):
    case = make_case(tmp_path, n=20, length=50)
    path = str(case.bigwigs[0])
    alone = BigWigReader(path)
    assert alone._kept_limit() == bigwig._RESIDENT_MAX_BYTES
    assert alone._kept_limit(bigwig._CACHE_BYTES) == bigwig._CACHE_BYTES
    run = BIGWIG_MEMORY_MB << 20
    for files in (1, 2, 4, 5, 8, 12):
        readers = [BigWigReader(path) for _ in range(files)]
        share_run_memory(readers, run)
        expected = min(bigwig._RESIDENT_MAX_BYTES, run // files)
        assert (expected == bigwig._RESIDENT_MAX_BYTES) == (files <= 4)
        assert {r._kept_limit() for r in readers} == {expected}
        assert {r._kept_limit(bigwig._CACHE_BYTES) for r in readers} == {min(bigwig._CACHE_BYTES, expected)}
        assert sum(r._kept_limit() for r in readers) <= run
        copy = pickle.loads(pickle.dumps(readers[0]))  # a spawned reading process keeps the share
        assert copy._kept_limit() == expected
        for r in readers + [copy]:
            r.close()
    alone.close()


def test_a_file_over_its_share_is_read_block_by_block_and_its_cache_stays_within_it(tmp_path, monkeypatch):
    """A file that would be kept whole alone, given a share smaller than it, is read block by block with at most its
    share of blocks cached; the values are pyBigWig's."""
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)  # big: kept whole once reads or windows say so
    case = make_case(tmp_path, n=300, length=50, zero_rows=(), large_rows=())
    path = str(case.bigwigs[0])
    chroms, starts, ends = case.chrom.tolist(), case.start, case.end
    with BigWigReader(path) as kept:
        kept.expect(kept.chrom_ids(chroms), starts, ends)
        np.testing.assert_array_equal(kept.read(chroms, starts, ends), case.observed[:, 0])
        assert kept._resident is not None
    with BigWigReader(path) as shared:
        shared.keep_at_most(2_000)
        shared.expect(shared.chrom_ids(chroms), starts, ends)
        ids = shared.chrom_ids(chroms)
        for a in range(0, len(chroms), 25):
            got = shared.read(chroms[a:a + 25], starts[a:a + 25], ends[a:a + 25])
            np.testing.assert_array_equal(got, case.observed[a:a + 25, 0])
            touched = np.unique(shared._touched(genome_keys(ids[a:a + 25], starts[a:a + 25]), 50, owners=False)[0])
            assert shared._cache_size <= 2_000 or set(shared._cache) <= set(touched.tolist())  # only this read's
        assert shared._resident is None and shared.reads_blocks()


def test_a_run_of_many_tracks_gives_each_file_its_share_and_scores_as_with_every_file_kept(tmp_path, monkeypatch):
    """Six observed tracks: each reader of the run gets a sixth of ``--bigwig-memory-mb``; with that too small to keep
    any file (read block by block, cached within its share), the numbers equal those of files kept whole."""
    case = make_case(tmp_path, n=60, n_tracks=6, length=50)
    paths = [str(p) for p in case.bigwigs]
    with open_inputs(Job(str(case.predictions), paths, run=RunOptions(read_workers=0, bigwig_memory_mb=60))) as inputs:
        assert {r._kept_limit() for r in inputs.truth.bigwig_readers()} == {(60 << 20) // 6}
    kept = score(str(case.predictions), paths, batch_size=16, read_workers=0, device="cpu")
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    for workers in (0, 2):
        shared = score(str(case.predictions), paths, batch_size=16, read_workers=workers, device="cpu",
                       bigwig_memory_mb=0)
        for name, column in kept.columns.items():
            np.testing.assert_array_equal(np.asarray(shared.columns[name]), np.asarray(column), err_msg=name)


def test_an_ensemble_of_predicted_bigwigs_shares_the_run_with_the_observed_ones(tmp_path):
    """Predicted bigWigs (two members of two tracks) and two observed tracks: six files, a sixth each."""
    case = make_case(tmp_path, n=20, length=50)
    members = []
    for m in range(2):
        tracks = []
        for s in range(2):
            per_chrom = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
            for i in range(len(case.chrom)):
                per_chrom[case.chrom[i]][case.start[i]:case.end[i]] = np.exp(case.logits[i, s]) / 1e3 + m
            tracks.append(str(write_bigwig(tmp_path / f"pred{m}_{s}.bw", case.chrom_sizes, per_chrom)))
        members.append(",".join(tracks))
    read = ReadOptions(ensemble=[members[1]])
    regions = tmp_path / "regions.bed"
    regions.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
    preds, _, truth, _ = open_sources(members[0], [str(p) for p in case.bigwigs], str(regions), read)
    try:
        readers = preds.bigwig_readers() + truth.bigwig_readers()
        assert len(readers) == 6
        assert {r._kept_limit() for r in readers} == {bigwig._RESIDENT_MAX_BYTES}  # not shared: a check's reads
    finally:
        truth.close()
        preds.close()
    with open_inputs(Job(members[0], [str(p) for p in case.bigwigs], str(regions), read)) as inputs:
        readers = inputs.preds.bigwig_readers() + inputs.truth.bigwig_readers()
        assert len(readers) == 6 and {r._kept_limit() for r in readers} == {(BIGWIG_MEMORY_MB << 20) // 6}


@pytest.mark.slow
def test_cli_bigwig_memory_changes_no_number_and_a_negative_one_is_a_usage_error(tmp_path):
    """``--bigwig-memory-mb 0``: every file read block by block, with nothing cached between batches; the report is
    the default run's, byte for byte. A negative value is refused in one line (exit 2)."""
    case = make_case(tmp_path, n=90, length=48, seed=5)
    reports = {}
    for memory in ("512", "0"):
        out = tmp_path / f"out{memory}"
        result = run_cli("score", case.predictions, *case.bigwigs, "-o", out, "--batch-size", "8", "--no-plots",
                         "--bigwig-memory-mb", memory, "--quiet")
        assert result.returncode == 0, result.stderr
        reports[memory] = out
    for name in ("regions.tsv", "summary.tsv", "summary.json"):
        assert (reports["0"] / name).read_bytes() == (reports["512"] / name).read_bytes(), name
    refused = run_cli("score", case.predictions, *case.bigwigs, "-o", tmp_path / "refused", "--bigwig-memory-mb", "-1")
    assert refused.returncode == 2 and "--bigwig-memory-mb must be 0 or more" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_heap_a_decoding_freed_is_returned_only_where_the_cli_tuned_the_allocator():
    """``process.trim_heap`` (called once a bigWig is decoded whole) gives the freed heap back where
    ``return_batch_memory`` raised glibc's trim threshold (the CLI), and does nothing in a Python session that did
    not."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc")
    script = ("from bpnet_eval.process import return_batch_memory, trim_heap\n"
              "def churn():\n"
              "    held = [bytes(2000) for _ in range(20000)]\n"
              "    del held\n"
              "churn(); untuned = trim_heap()\n"
              "return_batch_memory(); churn(); tuned = trim_heap()\n"
              "print(untuned, tuned)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True"], result.stderr
