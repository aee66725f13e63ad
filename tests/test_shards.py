"""score --shard i/n + merge == one unsharded score; shard ranges, resume, refusals; batch-size and
device invariance."""

import json
import os
import re
import shutil

import h5py
import numpy as np
import pytest
import torch

from scipy.stats import spearmanr

from bpnet_eval.errors import UsageError
from bpnet_eval.pipeline import score
from bpnet_eval.report.tables import regions_tsv
from bpnet_eval.shards import merge, parse_shard, score_shard, shard_rows
from bpnet_eval.options import Job, Policies
from tests.support.cases import make_case
from tests.support.cli import run_cli

CHUNK = 8


def rechunk(path, chunk_rows):
    """Rewrite every per-region dataset of an HDF5 file chunked along regions (whole trailing axes)."""
    with h5py.File(path, "r+") as h5:
        for name in ("predictions/logits", "predictions/logcounts"):
            data = h5[name][:]
            del h5[name]
            h5.create_dataset(name, data=data, chunks=(chunk_rows,) + data.shape[1:])


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """One case scored unsharded (default batch size) and as shards 1..3 (batch size 5) through the CLI."""
    tmp_path = tmp_path_factory.mktemp("sharded")
    case = make_case(tmp_path, n=53, length=40, peak=np.arange(53) % 4 == 0, seed=3)
    rechunk(case.predictions, CHUNK)
    run_ok("score", *files(case), "--out", tmp_path / "full", "-q", "--no-plots")
    for k in (1, 2, 3):
        run_ok("score", *files(case), "--shard", f"{k}/3", "--out", tmp_path / f"s{k}", "-q", "--batch-size", "5")
    return case, tmp_path


def files(case):
    return [case.predictions, *case.bigwigs]


def run_ok(*args):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("index,count,chunk", [(1, 1, 1), (2, 3, 8), (5, 5, 8), (7, 7, 1), (3, 4, 100)])
def test_shard_rows_tile_the_regions_in_whole_chunks(index, count, chunk):
    n = 53
    bounds = [shard_rows(n, k, count, chunk) for k in range(1, count + 1)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(start % chunk == 0 for start, _ in bounds)
    assert shard_rows(n, index, count, chunk) == bounds[index - 1]
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= chunk


def test_parse_shard_is_one_based_and_reads_slurm():
    assert parse_shard("1/4") == (1, 4) and parse_shard("4/4") == (4, 4)
    assert parse_shard("auto/8", {"SLURM_ARRAY_TASK_ID": "3"}) == (3, 8)
    for bad in ("0/4", "5/4", "x", "2/0", "1-4"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("auto/8", {})


@pytest.mark.slow
def test_sharded_and_merged_equals_unsharded(sharded_run):
    case, tmp_path = sharded_run
    for k in (1, 2, 3):
        partial = json.loads((tmp_path / f"s{k}" / "partial.json").read_text())
        start, stop = partial["rows"]
        assert start % CHUNK == 0 and partial["chunk_rows"] == CHUNK and stop > start
        assert not (tmp_path / f"s{k}" / "summary.json").exists()
        rows = np.loadtxt(tmp_path / f"s{k}" / "regions.tsv", skiprows=1, usecols=4, ndmin=1)
        np.testing.assert_array_equal(rows, np.arange(start, stop) + 1)
    run_ok("merge", tmp_path / "s3", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "merged", "-q",
           "--no-plots")
    full_dir, merged_dir = tmp_path / "full", tmp_path / "merged"
    assert (full_dir / "regions.tsv").read_bytes() == (merged_dir / "regions.tsv").read_bytes()
    assert (full_dir / "skipped.tsv").read_bytes() == (merged_dir / "skipped.tsv").read_bytes()
    full = json.loads((full_dir / "summary.json").read_text())
    merged = json.loads((merged_dir / "summary.json").read_text())
    # the only difference: the batch size the shards ran with (documented)
    assert merged["settings"].pop("batch_size") == 5 and full["settings"].pop("batch_size") == 1024
    assert merged == full
    # medians and correlations are recomputed from every region, not averaged over shards
    table = np.genfromtxt(merged_dir / "regions.tsv", names=True, dtype=None, encoding=None, delimiter="\t")
    assert merged["metrics"]["profile_mnll"]["median"] == pytest.approx(np.median(table["profile_mnll"]), rel=1e-9)
    y = np.log1p(table["observed_counts"])
    assert merged["counts"]["pearson"] == pytest.approx(np.corrcoef(table["predicted_logcounts"], y)[0, 1], rel=1e-9)
    peaks = table["peak"] == 1
    assert merged["groups"]["peaks"]["counts"]["spearman"] == pytest.approx(
        spearmanr(table["predicted_logcounts"][peaks], y[peaks])[0], rel=1e-9)


def test_skipped_rows_of_every_shard_are_merged(tmp_path):
    case = make_case(tmp_path, n=30, length=40, seed=5)
    logits = case.logits.copy()
    logits[4, 0, 3] = np.nan
    logits[25, 1, 0] = np.inf
    with h5py.File(case.predictions, "r+") as h5:
        h5["predictions/logits"][...] = logits
    inputs = (str(case.predictions), [str(p) for p in case.bigwigs])
    full = score(*inputs, device="cpu", policies=Policies(nonfinite="skip"))
    for k in (1, 2, 3):
        score_shard(tmp_path / f"s{k}", (k, 3), Job.of(*inputs, device="cpu", policies=Policies(nonfinite="skip")))
    merged = merge([tmp_path / f"s{k}" for k in (1, 2, 3)])
    assert [s["row"] for s in full.summary["skipped"]] == [5, 26]
    assert merged.summary == full.summary
    assert "".join(regions_tsv(merged.regions, merged.columns)) == "".join(regions_tsv(full.regions, full.columns))


@pytest.mark.slow  # two option sets scored whole and in three shards, over 1 s
def test_shuffled_baselines_and_presets_merge_exactly(tmp_path):
    """Keyed shuffles and preset summaries come out of shard + merge exactly as from one run."""
    case = make_case(tmp_path, n=30, length=40, seed=6)
    inputs = (str(case.predictions), [str(p) for p in case.bigwigs])
    for options in ({"metrics": "jsd_shuffled,jsd_observed_shuffled,spearman", "seed": 9}, {"preset": "chrombpnet"}):
        full = score(*inputs, device="cpu", batch_size=4, **options)
        for k in (1, 2, 3):
            score_shard(tmp_path / f"{len(options)}{k}", (k, 3), Job.of(*inputs, device="cpu", batch_size=7, **options))
        merged = merge([tmp_path / f"{len(options)}{k}" for k in (1, 2, 3)])
        strip = lambda summary: {k: v for k, v in summary.items() if k != "settings"}  # noqa: E731
        assert strip(merged.summary) == strip(full.summary)
        assert merged.files == full.files
        for name, values in full.columns.items():
            np.testing.assert_array_equal(merged.columns[name], values, err_msg=name)
    for options in ({"preset": "bpnet"}, {"metrics": "all"}):
        with pytest.raises(UsageError, match="pooled auPRC"):
            score_shard(tmp_path / "no", (1, 2), Job.of(*inputs, device="cpu", **options))


@pytest.mark.slow
def test_a_complete_shard_is_skipped_on_rerun(sharded_run, tmp_path):
    case, run_dir = sharded_run
    out = tmp_path / "s1"
    shutil.copytree(run_dir / "s1", out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_ok("score", *files(case), "--shard", "1/3", "--out", out, "--batch-size", "5")
    assert "already complete, skipped" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    (out / "partial.json").unlink()  # an interrupted shard (no marker) is scored again
    status, _ = score_shard(out, (1, 3), Job.of(str(case.predictions), [str(p) for p in case.bigwigs], device="cpu",
                                                       batch_size=5))
    assert status == "scored" and (out / "partial.json").exists()
    assert (out / "regions.tsv").read_bytes() == (run_dir / "s1" / "regions.tsv").read_bytes()
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="2")
    env_run = run_cli("score", *files(case), "--shard", "auto/3", "--out", tmp_path / "auto", "-q", env=env)
    assert env_run.returncode == 0, env_run.stderr
    assert json.loads((tmp_path / "auto" / "partial.json").read_text())["shard"] == [2, 3]


@pytest.mark.slow
def test_merge_refuses_missing_duplicate_and_foreign_shards(sharded_run, tmp_path):
    case, run_dir = sharded_run
    score_shard(tmp_path / "other", (2, 3), Job.of(str(case.predictions), [str(p) for p in case.bigwigs], device="cpu",
                                                             count_loss_weight=2.0))
    s1, s2, s3 = (run_dir / f"s{k}" for k in (1, 2, 3))
    for dirs, message in (([s1, s3], "shard(s) 2 of 3 are missing"), ([s1, s2, s2, s3], "shard 2/3 is given twice"),
                          ([s1, tmp_path / "other", s3], "come from different runs (options differ)")):
        with pytest.raises(UsageError, match=re.escape(message)):
            merge(dirs)
    result = run_cli("merge", s1, tmp_path / "nowhere", "--out", tmp_path / "m", "-q")
    assert result.returncode == 3 and "no partial.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("per_track_logcounts", [False, True])
def test_results_identical_across_batch_sizes(tmp_path, per_track_logcounts):
    case = make_case(tmp_path, n=37, length=60, per_track_logcounts=per_track_logcounts, seed=8)
    results = {b: score(str(case.predictions), [str(p) for p in case.bigwigs], batch_size=b, device="cpu")
               for b in (1, 7, 1024)}
    for b in (7, 1024):
        assert list(results[b].columns) == list(results[1].columns)
        for name, values in results[1].columns.items():
            np.testing.assert_allclose(results[b].columns[name], values, rtol=1e-13, atol=0, err_msg=name)


def test_cpu_results_match_float64_reference_on_every_device(tmp_path):
    """The same numbers on the CPU and (where one is present) the GPU, against a numpy reference."""
    from scipy.special import gammaln, log_softmax

    case = make_case(tmp_path, n=20, length=50, seed=11)
    k, z = case.observed, case.logits.astype(np.float64)
    joint = log_softmax(z.reshape(20, -1), axis=-1)
    flat = k.reshape(20, -1)
    expected = -gammaln(flat.sum(-1) + 1) + gammaln(flat + 1).sum(-1) - (flat * joint).sum(-1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        result = score(str(case.predictions), [str(p) for p in case.bigwigs], device=device, batch_size=6)
        np.testing.assert_allclose(result.columns["profile_mnll"], expected, rtol=1e-9, atol=1e-9, err_msg=device)
        assert result.summary["settings"]["device"].startswith(device)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_usage_error(case, tmp_path):
    result = run_cli("score", *files(case), "--device", "cuda", "--out", tmp_path / "r", "-q")
    assert result.returncode == 2 and "--device cpu" in result.stderr
