"""Ensembles of fold predictions (--ensemble): the ensemble built by hand in numpy float64 (mean of probabilities,
mean of log counts or log of mean counts), then its scores; members that do not match are one-line errors."""

import json
import threading

import h5py
import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp, softmax

import bpnet_eval
from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.sources import ensemble
from bpnet_eval.sources.ensemble import ensemble_logcounts, ensemble_profile
from tests.support.cases import write_bigwig, write_predictions
from tests.support.checks import assert_one_line_error, read_columns
from tests.support.cli import run_cli
from tests.support.reference import mnll


def folds(n=40, n_tracks=2, length=30, per_track=False, n_folds=3, seed=0):
    rng = np.random.default_rng(seed)
    observed = rng.poisson(rng.gamma(0.5, 2.0, size=(n, n_tracks, length))).astype(np.float64)
    observed[2] = 0
    members = []
    for _ in range(n_folds):
        logits = np.log(observed + 0.5) + rng.normal(0, 1.5, size=observed.shape) + rng.normal(0, 3.0)
        totals = observed.sum(axis=-1) if per_track else observed.sum(axis=(1, 2))[:, None]
        members.append((logits, np.log1p(totals) + rng.normal(0, 0.5, size=totals.shape)))
    return members, observed


def by_hand(members, per_track, rule):
    """The ensemble in numpy float64: ``log mean_f softmax(z_f)`` and the rule's log counts."""
    members = [(np.asarray(z, dtype=np.float64), np.asarray(c, dtype=np.float64)) for z, c in members]
    n = members[0][0].shape[0]
    if per_track:
        probs = np.mean([softmax(z, axis=-1) for z, _ in members], axis=0)
    else:
        probs = np.mean([softmax(z.reshape(n, -1), axis=-1) for z, _ in members], axis=0).reshape(members[0][0].shape)
    counts = np.array([c for _, c in members], dtype=np.float64)
    logcounts = counts.mean(axis=0) if rule == "mean-log" else np.log(np.exp(counts).mean(axis=0))
    return np.log(probs), logcounts


def observed_bigwigs(tmp_path, observed):
    """Windows of 40 bases every 100 on chr1 and the two observed bigWigs holding ``observed`` (N, 2, 40) there."""
    n = observed.shape[0]
    chrom, start, sizes = np.array(["chr1"] * n), np.arange(n) * 100, {"chr1": 100 * n + 100}
    tracks = []
    for s in range(2):
        values = np.zeros(sizes["chr1"])
        for i in range(n):
            values[start[i]:start[i] + 40] = observed[i, s]
        tracks.append(write_bigwig(tmp_path / f"obs{s}.bw", sizes, {"chr1": values}))
    return chrom, start, tracks


@pytest.mark.parametrize("per_track", [False, True])
@pytest.mark.parametrize("rule", ["mean-log", "log-mean"])
def test_ensemble_arrays_match_numpy(per_track, rule):
    members, _ = folds(per_track=per_track)
    log_probs, logcounts = by_hand(members, per_track, rule)
    logits = ensemble_profile([z for z, _ in members], joint=not per_track)
    axis = -1 if per_track else (1, 2)
    np.testing.assert_allclose(np.exp(logits), np.exp(log_probs), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.exp(logits).sum(axis=axis), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ensemble_logcounts([c for _, c in members], rule), logcounts, rtol=1e-12)


@pytest.mark.parametrize("per_track", [False, True])
def test_blocks_of_regions_shared_among_threads_give_the_same_bits(monkeypatch, per_track):
    """Regions a block at a time, the blocks shared out among threads, members given one at a time (an iterator):
    the same float64 bits as one thread, and numpy's ensemble."""
    members, _ = folds(n=41, per_track=per_track, seed=3)
    logits = [z.astype(np.float32) for z, _ in members]
    monkeypatch.setattr(ensemble, "ENSEMBLE_BLOCK_VALUES", 120)  # two regions a block: 21 blocks
    one = ensemble_profile(logits, joint=not per_track)
    for threads in (2, 3, 8, 64):
        shared = ensemble_profile(iter(logits), joint=not per_track, again=lambda rows: [z[rows] for z in logits],
                                  threads=threads)
        assert np.array_equal(shared.view(np.int64), one.view(np.int64))
    log_probs, _ = by_hand([(z, c) for z, (_, c) in zip(logits, members)], per_track, "mean-log")
    np.testing.assert_allclose(one, log_probs, rtol=1e-12)


def test_extreme_logits_stay_exact():
    """Logits of 1e4 and log counts of 700 (e^700 near float64's limit) neither overflow nor lose digits."""
    z = np.zeros((1, 1, 4))
    members = [z + np.array([1e4, 0, 0, 0]), z + np.array([0, 1e4, 0, 0])]
    np.testing.assert_allclose(np.exp(ensemble_profile(members, joint=True))[0, 0], [0.5, 0.5, 0, 0], atol=1e-300)
    by_logs = logsumexp([log_softmax(m[0, 0]) for m in members], axis=0) - np.log(2)  # -1e4 - log 2 where 0
    np.testing.assert_allclose(ensemble_profile(members, joint=True)[0, 0], by_logs, rtol=1e-15)
    assert np.isfinite(by_logs).all() and by_logs[2] < -9999
    counts = [np.array([[700.0]]), np.array([[709.0]])]
    np.testing.assert_allclose(ensemble_logcounts(counts, "log-mean"), logsumexp([700.0, 709.0]) - np.log(2), rtol=1e-15)


def test_rows_whose_mean_underflows_are_read_again_from_members_read_ahead(tmp_path):
    """Members read one at a time (gzip files inflated ahead by reading processes): rows whose mean probability
    underflows (logits spread by 1e4) are read once more from each member, and equal the log-domain ensemble."""
    members, observed = folds(n=50, length=20, seed=5)
    spread = [3, 17, 18, 44]  # in the 1st, 3rd and 5th batch of 10
    for k, (z, _) in enumerate(members):
        z[spread, 0, k] += 1e4
    n = observed.shape[0]
    chrom, start = np.array(["chr1"] * n), np.arange(n) * 100
    paths = []
    for k, (z, c) in enumerate(members):
        path = write_predictions(tmp_path / f"fold{k}.h5", z, c, chrom, start, start + 20)
        with h5py.File(path, "r+") as h5:  # gzip, a chunk per region: inflated by a reading process
            del h5["predictions/logits"]
            h5.create_dataset("predictions/logits", data=z, chunks=(1, 2, 20), compression="gzip")
        paths.append(str(path))
    result = bpnet_eval.score(paths[0], observed, ensemble=paths[1:], device="cpu", batch_size=10)
    log_probs = logsumexp([log_softmax(z.reshape(n, -1), axis=-1) for z, _ in members], axis=0) - np.log(3)
    assert (log_probs[spread] < -9000).any(axis=1).all()  # those rows' mean does underflow in probabilities
    joint = mnll(log_probs, observed.reshape(n, -1))
    assert np.isfinite(result.columns["profile_mnll"]).all()
    np.testing.assert_allclose(result.columns["profile_mnll"], joint, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("per_track", [False, True])
@pytest.mark.parametrize("rule", ["mean-log", "log-mean"])
def test_the_ensembles_scores_match_numpy(per_track, rule):
    members, observed = folds(per_track=per_track, seed=4)
    log_probs, logcounts = by_hand(members, per_track, rule)
    result = bpnet_eval.score(members[0], observed, ensemble=members[1:], ensemble_logcounts=rule, device="cpu",
                              read_workers=0, batch_size=7)
    n = observed.shape[0]
    joint = mnll(log_softmax(log_probs.reshape(n, -1), axis=-1), observed.reshape(n, -1))
    np.testing.assert_allclose(result.columns["profile_mnll"], joint, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.columns["profile_mnll_plus"],
                               mnll(log_softmax(log_probs[:, 0], axis=-1), observed[:, 0]), rtol=1e-9, atol=1e-9)
    if per_track:
        count = ((np.log1p(observed.sum(axis=2)) - logcounts) ** 2).mean(axis=1)
        np.testing.assert_allclose(result.columns["predicted_logcounts_minus"], logcounts[:, 1], rtol=1e-12)
    else:
        count = (np.log1p(observed.sum(axis=(1, 2))) - logcounts[:, 0]) ** 2
    np.testing.assert_allclose(result.columns["count_log1p_mse"], count, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(result.summary["metrics"]["mixture_loss"]["mean"], (joint + count).mean(), rtol=1e-9)
    settings = result.summary["settings"]["ensemble"]
    assert len(settings["members"]) == 3 and settings["logcounts"].startswith(rule)
    assert "mean of the members' probabilities" in settings["profile"]


def test_members_that_differ_are_named(tmp_path):
    members, observed = folds()
    logits, logcounts = members[1]
    with pytest.raises(UsageError, match="log counts have shape"):
        bpnet_eval.score(members[0], observed, ensemble=[(logits, logcounts[:5])], device="cpu", read_workers=0)
    n = observed.shape[0]
    chrom, start = np.array(["chr1"] * n), np.arange(n) * 100
    a = write_predictions(tmp_path / "a.h5", logits, logcounts, chrom, start, start + 30)
    b = write_predictions(tmp_path / "b.h5", logits[:, :, :20], logcounts, chrom, start, start + 20)
    moved = start.copy()
    moved[9] += 5
    c = write_predictions(tmp_path / "c.h5", logits, logcounts, chrom, moved, moved + 30)
    with pytest.raises(InputError) as err:
        bpnet_eval.score(str(a), observed, ensemble=[str(b)], device="cpu", read_workers=0)
    assert str(err.value).startswith(f"{b}: 40 regions x 2 tracks x L = 20") and str(a) in str(err.value)
    with pytest.raises(InputError) as err:
        bpnet_eval.score(str(a), observed, ensemble=[str(c)], device="cpu", read_workers=0)
    assert str(err.value).startswith(f"{c}: region 10 is chr1:905-935") and "\n" not in str(err.value)


def test_a_nonfinite_member_skips_the_region_under_nonfinite_skip():
    members, observed = folds()
    bad = members[2][0].copy()
    bad[5, 1, 3] = np.nan
    result = bpnet_eval.score(members[0], observed, ensemble=[members[1], (bad, members[2][1])], device="cpu",
                              read_workers=0, policies=bpnet_eval.Policies(nonfinite="skip"))
    assert np.isnan(result.columns["profile_mnll"][5]) and np.isfinite(np.delete(result.columns["profile_mnll"], 5)).all()
    assert [s["row"] for s in result.summary["skipped"]] == [6]


@pytest.mark.slow
def test_score_an_ensemble_of_three_fold_files_and_compare_it_with_a_fold(tmp_path):
    members, observed = folds(n=30, length=40, seed=7)
    n = observed.shape[0]
    chrom, start, tracks = observed_bigwigs(tmp_path, observed)
    paths = [write_predictions(tmp_path / f"fold{k}.h5", z.astype(np.float32), c.astype(np.float32), chrom, start,
                               start + 40) for k, (z, c) in enumerate(members)]
    stored = [(h5py.File(p)["predictions/logits"][()], h5py.File(p)["predictions/logcounts"][()]) for p in paths]
    log_probs, logcounts = by_hand(stored, False, "mean-log")
    done = run_cli("score", paths[0], *tracks, "--ensemble", paths[1], "-e", paths[2], "--out", tmp_path / "ens",
                   "--no-plots", "-q")
    assert done.returncode == 0, done.stderr
    table = read_columns(tmp_path / "ens" / "regions.tsv")
    joint = mnll(log_softmax(log_probs.reshape(n, -1), axis=-1), observed.reshape(n, -1))
    np.testing.assert_allclose(np.array(table["profile_mnll"], dtype=float), joint, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.array(table["predicted_logcounts"], dtype=float), logcounts[:, 0], rtol=1e-9)
    summary = json.loads((tmp_path / "ens" / "summary.json").read_text())
    assert summary["settings"]["ensemble"]["members"] == [str(p) for p in paths]
    assert summary["inputs"]["predictions"]["layout"].startswith("ensemble of 3 predictions (")
    conventions = summary["settings"]["input_conventions"]
    assert conventions["predicted_logcounts"].startswith("mean-log: mean of the members' log counts")
    assert conventions["predicted_profile"].startswith("mean of the members' probabilities")
    for k, path in enumerate(paths):
        assert run_cli("score", path, *tracks, "--out", tmp_path / f"fold{k}", "--no-plots", "-q").returncode == 0
    compared = run_cli("compare", *(tmp_path / f"fold{k}" for k in range(3)), tmp_path / "ens", "--out",
                       tmp_path / "cmp")
    assert compared.returncode == 0, compared.stderr
    leaderboard = read_columns(tmp_path / "cmp" / "compare.tsv")
    means = {model: float(mean) for group, metric, model, mean in zip(
        leaderboard["group"], leaderboard["metric"], leaderboard["model"], leaderboard["mean"])
        if group == "all" and metric == "mixture_loss"}
    count = (np.log1p(observed.sum(axis=(1, 2))) - logcounts[:, 0]) ** 2
    assert set(means) == {"fold0", "fold1", "fold2", "ens"}
    np.testing.assert_allclose(means["ens"], (joint + count).mean(), rtol=1e-9)
    bad = run_cli("score", paths[0], *tracks, "-e", tmp_path / "missing.h5", "--out", tmp_path / "x", "-q")
    assert_one_line_error(bad, 3, "missing.h5")


def test_an_ensemble_of_predicted_bigwigs_one_per_fold(tmp_path):
    """chrombpnet's folds as counts-scale bigWigs (one track each): probabilities v/sum v averaged, ln(sum v)
    averaged."""
    import pyBigWig

    from tests.support.cases import make_case

    case = make_case(tmp_path, n=20, n_tracks=1, length=30, seed=3)
    rng = np.random.default_rng(2)
    paths = []
    for k in range(3):
        values = rng.gamma(0.8, 2.0, size=case.observed.shape) + 1e-3
        per_chrom = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
        for i in range(len(case.chrom)):
            per_chrom[case.chrom[i]][case.start[i]:case.end[i]] = values[i, 0]
        paths.append(str(write_bigwig(tmp_path / f"fold{k}.bw", case.chrom_sizes, per_chrom)))
    bed = tmp_path / "regions.bed"
    bed.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
    stored = []
    for path in paths:  # the values as stored (float32), read back with pyBigWig
        with pyBigWig.open(path) as bw:
            stored.append(np.array([bw.values(c, int(s), int(e), numpy=True)
                                    for c, s, e in zip(case.chrom, case.start, case.end)], dtype=np.float64))
    probs = np.mean([v / v.sum(axis=1, keepdims=True) for v in stored], axis=0)
    logcounts = np.mean([np.log(v.sum(axis=1)) for v in stored], axis=0)
    result = bpnet_eval.score(paths[0], [str(case.bigwigs[0])], str(bed), ensemble=paths[1:], device="cpu",
                              read_workers=0)
    observed = case.observed[:, 0]
    np.testing.assert_allclose(result.columns["profile_mnll"], mnll(np.log(probs), observed), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.columns["predicted_logcounts"], logcounts, rtol=1e-12)
    assert [m["path"] for m in result.summary["inputs"]["predictions"]["members"]] == paths


def test_a_sharded_ensemble_merges_to_the_unsharded_one(tmp_path):
    from bpnet_eval.options import Job
    from bpnet_eval.report.tables import regions_tsv
    from bpnet_eval.shards import merge, score_shard
    from tests.support.cases import make_case

    case = make_case(tmp_path, n=30, length=40, seed=5)
    rng = np.random.default_rng(1)
    more = [write_predictions(tmp_path / f"fold{k}.h5", case.logits + rng.normal(0, 1, case.logits.shape),
                              case.logcounts + rng.normal(0, 0.3, case.logcounts.shape), case.chrom, case.start,
                              case.end) for k in (1, 2)]
    inputs = (str(case.predictions), [str(p) for p in case.bigwigs])
    options = dict(device="cpu", ensemble=[str(p) for p in more], ensemble_logcounts="log-mean")
    full = bpnet_eval.score(*inputs, **options)
    for k in (1, 2, 3):
        score_shard(tmp_path / f"s{k}", (k, 3), Job.of(*inputs, **options))
    merged = merge([tmp_path / f"s{k}" for k in (1, 2, 3)])
    assert merged.summary == full.summary
    assert "".join(regions_tsv(merged.regions, merged.columns)) == "".join(regions_tsv(full.regions, full.columns))
    assert full.summary["settings"]["ensemble"]["logcounts"].startswith("log-mean")


class _Member:
    """A member whose ``read`` records the thread it ran in (and fails where told to)."""

    def __init__(self, k, inflates_here=False, fails=False):
        self.k, self.inflates_here, self.fails, self.threads = k, inflates_here, fails, []

    def read(self, i, j):
        self.threads.append(threading.current_thread().name)
        if self.fails:
            raise InputError(f"member {self.k} is damaged")
        return np.full((j - i, 2, 3), float(self.k)), np.full((j - i, 1), float(self.k))


@pytest.mark.parametrize("ahead", [None, 0, 1, 2, 7])
def test_members_are_read_in_order_the_next_ones_beside(ahead):
    members = [_Member(k, inflates_here=k == 3) for k in range(6)]
    read = list(ensemble.members_read(members, 4, 9, ahead=ahead))
    assert [int(logits[0, 0, 0]) for logits, _ in read] == list(range(6))
    assert all(logits.shape == (5, 2, 3) and counts.shape == (5, 1) for logits, counts in read)
    beside = [m.threads[0].startswith("bpnet-eval-member") for m in members]
    threads = min(ensemble.MAX_ENSEMBLE_THREADS, ensemble.allotted_cpus()) if ahead is None else ahead
    assert beside == [False] + [threads > 0] * 5
    assert not [t for t in threading.enumerate() if t.name.startswith("bpnet-eval-member")]


def test_members_read_side_by_side_only_where_one_inflates_here():
    plain = [_Member(k) for k in range(4)]
    list(ensemble.members_read(plain, 0, 2))
    assert not any(name.startswith("bpnet-eval-member") for m in plain for name in m.threads)


def test_a_member_that_fails_beside_is_named_and_leaves_no_thread():
    members = [_Member(0, inflates_here=True), _Member(1), _Member(2, fails=True), _Member(3)]
    with pytest.raises(InputError, match="member 2 is damaged"):
        list(ensemble.members_read(members, 0, 4, ahead=2))
    assert not [t for t in threading.enumerate() if t.name.startswith("bpnet-eval-member")]


def test_an_ensemble_of_compressed_npz_members_equals_their_hdf5(tmp_path):
    """bpnet-lite .npz members (inflated side by side) and the same predictions as HDF5 members: the same report."""
    members, observed = folds(n=30, length=40, seed=11)
    chrom, start, tracks = observed_bigwigs(tmp_path, observed)
    (tmp_path / "r.bed").write_text("".join(f"chr1\t{a}\t{a + 40}\n" for a in start))
    h5, npz = [], []
    for k, (z, c) in enumerate(members):
        h5.append(write_predictions(tmp_path / f"fold{k}.h5", z.astype(np.float32), c.astype(np.float32), chrom,
                                    start, start + 40))
        np.savez_compressed(tmp_path / f"fold{k}.npz", z.astype(np.float32))
        np.savez_compressed(tmp_path / f"fold{k}.counts.npz", c.astype(np.float32))
        npz.append(f"{tmp_path / f'fold{k}.npz'},{tmp_path / f'fold{k}.counts.npz'}")
    for name, given in (("h5", h5), ("npz", npz)):
        done = run_cli("score", given[0], *tracks, "-e", given[1], "-e", given[2], "--regions", tmp_path / "r.bed",
                       "--out", tmp_path / name, "--no-plots", "-q")
        assert done.returncode == 0, done.stderr
    h5_table, npz_table = read_columns(tmp_path / "h5" / "regions.tsv"), read_columns(tmp_path / "npz" / "regions.tsv")
    for column in ("profile_mnll", "predicted_logcounts", "count_log1p_mse", "mixture_loss"):
        assert npz_table[column] == h5_table[column], column
