"""The torch-free CPU path (``bpnet_eval.seed``, ``metrics.count_summary``): equal to independent float64
numpy/scipy references, to the torch path, and a default run on the CPU never imports torch."""

import json
import math
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import torch
from scipy.special import gammaln
from scipy.stats import pearsonr, rankdata, spearmanr

from bpnet_eval import lgamma as lgamma_module
from bpnet_eval import seed
from bpnet_eval.metrics.count_summary import average_ranks, count_metrics, ordinal_ranks
from bpnet_eval.metrics.counts import COUNT_FUNCTIONS
from bpnet_eval.metrics.names import COUNT_METRICS_ALL
from tests.support.checks import numbers, read_columns
from tests.support.cases import make_case, write_bigwig
from tests.support.cli import REPO
from tests.support.reference import expected_columns


def test_log_factorial_table_is_correctly_rounded():
    """The shipped table holds lgamma(k + 1) correctly rounded (40-digit mpmath), as torch.lgamma gives it."""
    table = seed.log_factorial_table()
    assert len(table) == 16384 and table[0] == 0.0 and table[1] == 0.0
    mpmath.mp.dps = 40
    for k in list(range(300)) + list(range(300, len(table), 97)) + [len(table) - 1]:
        assert table[k] == float(mpmath.loggamma(k + 1)), k
    np.testing.assert_array_equal(table, torch.lgamma(torch.arange(1, len(table) + 1, dtype=torch.float64)).numpy())


def test_log_factorial_beyond_the_table_and_at_poles():
    mpmath.mp.dps = 40
    counts = np.array([16384.0, 1e6, 2.5, 1e300, np.inf, np.nan, -1.0, 3.0])
    got = seed.log_factorial(counts)
    for value, want in zip(got[:4], counts[:4]):
        assert value == pytest.approx(float(mpmath.loggamma(want + 1)), rel=1e-15)
    assert got[4] == np.inf and np.isnan(got[5]) and got[6] == np.inf and got[7] == float(np.log(6.0))


@pytest.mark.parametrize("per_track", [False, True])
def test_seed_computer_equals_scipy_reference(tmp_path, per_track):
    case = make_case(tmp_path, n=30, per_track_logcounts=per_track)
    observed = case.observed.astype(np.float32)
    columns = seed.SeedComputer(1.0, ["plus", "minus"])(case.logits, case.logcounts, observed)
    want = expected_columns(case.logits, case.logcounts, case.observed)
    for name in ("profile_mnll", "count_log1p_mse", "mixture_loss", "observed_counts"):
        np.testing.assert_allclose(columns[name], want[name], rtol=1e-12, atol=1e-9)
    for s, track in enumerate(("plus", "minus")):
        np.testing.assert_allclose(columns[f"profile_mnll_{track}"], want["per_track"][:, s], rtol=1e-12, atol=1e-9)
    assert all(v.dtype == np.float64 for v in columns.values())


def normalised_batch(n=3000, length=100, seed=7):
    """Non-integer counts (a normalised track) and log counts near their totals: numpy's and torch's ``log1p`` of
    such totals differ in the last bit for a few in a thousand."""
    rng = np.random.default_rng(seed)
    observed = (rng.poisson(rng.gamma(0.5, 4.0, size=(n, 2, length))) * 0.37).astype(np.float32)
    logits = rng.normal(size=observed.shape).astype(np.float32)
    logcounts = (np.log1p(observed.sum(axis=(1, 2), dtype=np.float64)) + rng.normal(0, 0.5, n))[:, None]
    return logits, logcounts.astype(np.float32), observed


@pytest.mark.parametrize("kind", ["counts", "normalised"])
def test_seed_computer_equals_the_torch_computer_bit_for_bit(tmp_path, kind):
    """On the CPU in float64 both computers take the same numbers (the torch one from ``seed``, its count loss
    too): a default run and a run of more metrics give the same seed columns, normalised tracks included."""
    from bpnet_eval.compute import BatchComputer

    if kind == "counts":
        case = make_case(tmp_path, n=30)
        logits, logcounts, observed = case.logits, case.logcounts, case.observed.astype(np.float32)
    else:
        logits, logcounts, observed = normalised_batch()
    numpy_columns = seed.SeedComputer(1.0, ["plus", "minus"])(logits, logcounts, observed)
    torch_columns = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64")(logits, logcounts, observed)
    assert numpy_columns.keys() == torch_columns.keys()
    for name in numpy_columns:
        np.testing.assert_array_equal(numpy_columns[name], torch_columns[name], err_msg=name)


def test_predicted_profile_is_a_scaled_softmax():
    rng = np.random.default_rng(1)
    logits, logcounts = rng.normal(size=(3, 2, 20)), rng.normal(2, 1, size=(3, 1))
    joint = np.exp(logits.reshape(3, -1)) / np.exp(logits.reshape(3, -1)).sum(-1, keepdims=True)
    np.testing.assert_allclose(seed.predicted_profile(logits, logcounts),
                               joint.reshape(3, 2, 20) * np.exp(logcounts)[:, :, None], rtol=1e-12)


def test_count_ranks_equal_scipy_rankdata():
    x = np.random.default_rng(0).integers(0, 6, size=200).astype(float)
    np.testing.assert_array_equal(average_ranks(x), rankdata(x))
    np.testing.assert_array_equal(ordinal_ranks(x), rankdata(x, method="ordinal"))
    ranks = average_ranks(np.array([3.0, np.nan, 1.0, 3.0]))
    assert np.isnan(ranks[1]) and ranks[[0, 2, 3]].tolist() == [2.5, 1.0, 2.5]
    # a column's length: numpy's vectorised sort, ties in any order, -0.0 tied with 0.0, NaNs among them
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(0, 2, size=100_003), 1)
    x[rng.integers(0, len(x), 500)] = -0.0
    x[rng.integers(0, len(x), 50)] = np.nan
    defined = ~np.isnan(x)
    ranks = average_ranks(x)
    assert np.isnan(ranks[~defined]).all()
    np.testing.assert_array_equal(ranks[defined], rankdata(x[defined]))


@pytest.mark.parametrize("target", ["log1p", "log"])
def test_count_metrics_equal_scipy(target):
    rng = np.random.default_rng(3)
    totals = rng.poisson(rng.gamma(1.0, 30.0, size=500)).astype(float)
    totals[:40] = totals[40:80]  # ties
    predicted = np.log1p(totals) + rng.normal(0, 0.4, size=500)
    kept = totals > 0 if target == "log" else np.ones(500, bool)
    y = np.log(totals[kept]) if target == "log" else np.log1p(totals)
    c = predicted[kept]
    got = count_metrics(predicted, totals, names=COUNT_METRICS_ALL, target=target)
    assert got["pearson"] == pytest.approx(pearsonr(c, y)[0], rel=1e-13)
    assert got["spearman"] == pytest.approx(spearmanr(c, y)[0], rel=1e-13)
    assert got["mse"] == pytest.approx(np.mean((y - c) ** 2), rel=1e-13)
    assert got["mae"] == pytest.approx(np.mean(np.abs(y - c)), rel=1e-13)
    assert got["variance_explained"] == pytest.approx(1 - np.var(y - c) / np.var(y), rel=1e-13)
    ordinal = count_metrics(predicted, totals, names=("spearman",), ties="ordinal", target=target)["spearman"]
    assert ordinal == pytest.approx(pearsonr(rankdata(c, method="ordinal"), rankdata(y, method="ordinal"))[0],
                                    rel=1e-13)


def test_count_metrics_undefined_and_bpnet_lite_ties():
    assert count_metrics([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == {"pearson": None, "spearman": None,
                                                               "mse": pytest.approx(np.mean((np.log(6) - [1, 2, 3]) ** 2))}
    assert count_metrics([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], ties="ordinal")["pearson"] == 0.0  # bpnet-lite: 0
    rng = np.random.default_rng(4)
    predicted, totals = rng.normal(3, 1, size=300), rng.poisson(20, size=300).astype(float)
    torch_value = float(COUNT_FUNCTIONS["spearman"](torch.tensor(predicted), torch.tensor(totals), ties="argsort",
                                                    zero_variance=0.0))
    assert count_metrics(predicted, totals, names=("spearman",), ties="argsort")["spearman"] == torch_value


RUN_AND_REPORT_TORCH = r"""
import os, sys
exit_now = os._exit
def report_and_exit(code):
    print("TORCH_IMPORTED=%s" % ("torch" in sys.modules), file=sys.stderr, flush=True)
    exit_now(code)
os._exit = report_and_exit
sys.argv = ["bpnet-eval"] + sys.argv[1:]
from bpnet_eval.cli import main
main()
"""


@pytest.mark.slow
def test_a_default_or_bpnet_cpu_run_never_imports_torch_and_matches_the_reference(tmp_path):
    case = make_case(tmp_path, n=60)
    # a normalised track (fold change: a value on every base, none an integer): thousands of counts off the table
    # per batch, which once took torch's lgamma
    normalised = (case.observed * 0.37 + 0.05).astype(np.float32)
    normalised_bigwigs = []
    for s in range(normalised.shape[1]):
        per_chrom = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
        for i in range(len(case.chrom)):
            per_chrom[case.chrom[i]][case.start[i]:case.end[i]] = normalised[i, s]
        normalised_bigwigs.append(write_bigwig(tmp_path / f"normalised{s}.bw", case.chrom_sizes, per_chrom))
    outcomes = {}
    for name, extra, bigwigs, observed in (("default", [], case.bigwigs, case.observed),
                                           ("normalised", ["--batch-size", "64"], normalised_bigwigs, normalised),
                                           ("bpnet", ["--preset", "bpnet"], case.bigwigs, case.observed),
                                           ("all", ["--metrics", "all"], case.bigwigs, case.observed)):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-c", RUN_AND_REPORT_TORCH, "score", str(case.predictions),
                               *map(str, bigwigs), "--out", str(out), "--quiet", "--no-plots", "--device",
                               "cpu", "--batch-size", "16", *extra], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert done.returncode == 0, done.stderr
        outcomes[name] = [line for line in done.stderr.splitlines() if line.startswith("TORCH_IMPORTED")]
        table = read_columns(out / "regions.tsv")
        want = expected_columns(case.logits, case.logcounts, observed)
        for column in ("profile_mnll", "count_log1p_mse", "mixture_loss"):
            np.testing.assert_allclose(numbers(table, column), want[column], rtol=1e-10)
        summary = json.loads((out / "summary.json").read_text())
        y = np.log1p(observed.astype(np.float64).sum(axis=(1, 2)))
        assert summary["counts"]["pearson"] == pytest.approx(pearsonr(case.logcounts[:, 0], y)[0], rel=1e-12)
        assert summary["counts"]["spearman"] == pytest.approx(spearmanr(case.logcounts[:, 0], y)[0], rel=1e-12)
    for name in ("default", "normalised", "bpnet"):  # bpnet: the pooled auPRC in numpy too
        assert outcomes[name] and set(outcomes[name]) == {"TORCH_IMPORTED=False"}, name  # every process
    assert "TORCH_IMPORTED=True" in outcomes["all"]


# As a CUDA build of torch would say (PyPI's plain Linux wheel is one): what an earlier --device auto read to decide.
AS_A_CUDA_BUILD = r"""
from importlib import metadata
version_of = metadata.version
metadata.version = lambda name: "2.13.0" if name == "torch" else version_of(name)
"""


@pytest.mark.slow
def test_auto_scores_the_seed_losses_without_torch_whichever_torch_is_installed(tmp_path):
    """``--device auto`` with the default metrics takes the numpy path on the CPU even beside a CUDA torch (whose
    import alone, 3-5 s on an H200 node, costs more than the CPU run); ``--metrics all`` still goes to torch."""
    case = make_case(tmp_path, n=40)
    for name, extra in (("default", []), ("all", ["--metrics", "all"])):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-c", AS_A_CUDA_BUILD + RUN_AND_REPORT_TORCH, "score",
                               str(case.predictions), *map(str, case.bigwigs), "--out", str(out), "--quiet",
                               "--no-plots", "--device", "auto", "--batch-size", "16", *extra],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        assert done.returncode == 0, done.stderr
        imported = {line for line in done.stderr.splitlines() if line.startswith("TORCH_IMPORTED")}
        if name == "default":
            assert imported == {"TORCH_IMPORTED=False"}  # every process
        else:
            assert "TORCH_IMPORTED=True" in imported
        if name == "default":
            assert json.loads((out / "summary.json").read_text())["settings"]["device"] == "cpu"  # a GPU or none
        want = expected_columns(case.logits, case.logcounts, case.observed)
        np.testing.assert_allclose(numbers(read_columns(out / "regions.tsv"), "mixture_loss"), want["mixture_loss"],
                                   rtol=1e-10)


def test_count_sums_equal_dense_sums_with_empty_rows_anywhere():
    """Every row's sums, whichever rows (first, middle, last, several at the end) have no counts."""
    rng = np.random.default_rng(5)
    for trial in range(300):
        n, n_tracks, length = rng.integers(1, 9), rng.integers(1, 3), rng.integers(1, 40)
        counts = rng.poisson(rng.choice([0.01, 0.1, 1.0, 30.0]), size=(n, n_tracks, length)).astype(np.float32)
        for row in rng.integers(0, n, size=rng.integers(0, 3)):
            counts[row] = 0
        if rng.random() < 0.5:
            counts[-rng.integers(1, n + 1):] = 0
        logits = rng.normal(size=counts.shape).astype(np.float32)
        totals, log_factorials, dots = seed.count_sums(counts, logits)
        wide = counts.astype(np.float64)
        np.testing.assert_array_equal(totals, wide.sum(-1), err_msg=str(trial))
        np.testing.assert_allclose(log_factorials, gammaln(wide + 1).sum(-1), rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(dots, (wide * logits).sum(-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shifted", [False, True])
def test_dense_and_sparse_count_sums_agree_and_a_row_never_depends_on_its_batch(shifted):
    """Rows with counts on most bases take the dense sums, sparse rows the sums over their nonzero counts: the same
    numbers, and each row's sums are the same bits whichever rows share its batch."""
    rng = np.random.default_rng(6)
    counts = rng.poisson(3.0, size=(300, 2, 64)).astype(np.float32)
    counts[::7] = 0
    counts[1::3, :, 2:] = 0  # a third of the rows sparse
    logits = (rng.normal(size=counts.shape) + (5e3 if shifted else 0)).astype(np.float32)
    shift = logits.max(axis=-1).astype(np.float64) if shifted else None
    together = np.stack(seed.count_sums(counts, logits, shift))
    for rows in (slice(0, 1), slice(1, 2), slice(5, 40), slice(299, 300)):
        alone = np.stack(seed.count_sums(counts[rows], logits[rows], None if shift is None else shift[rows]))
        np.testing.assert_array_equal(alone, together[:, rows])
    rows = counts.reshape(-1, 64)
    values = logits.reshape(-1, 64).astype(np.float64) - (0 if shift is None else shift.reshape(-1, 1))
    dense = seed.dense_count_sums(rows, logits.reshape(-1, 64), None if shift is None else shift.reshape(-1))
    wide = rows.astype(np.float64)
    for got in (dense, together.reshape(3, -1)):
        np.testing.assert_array_equal(got[0], wide.sum(-1))
        np.testing.assert_allclose(got[1], gammaln(wide + 1).sum(-1), rtol=1e-13)
        np.testing.assert_allclose(got[2], (wide * values).sum(-1), rtol=1e-12, atol=1e-9)


def test_dense_non_integer_counts_joined_in_bigger_blocks_give_each_row_its_own_sums(monkeypatch):
    """Blocks of non-integer counts (a normalised track) next to each other have their lgamma computed together, up to
    ``LGAMMA_JOINED_BLOCKS`` blocks, between blocks of read counts: every row's sums are the bits of its own."""
    monkeypatch.setattr(seed, "DENSE_BLOCK_VALUES", 4 * 700)  # 4 rows a block
    rng = np.random.default_rng(12)
    rows = (1 + rng.poisson(0.5, size=(90, 700))).astype(np.float32)
    scaled = np.ones(90, bool)
    scaled[[8, 9, 10, 11, 40, 41, 42, 43, 44, 45, 46, 47]] = False  # blocks 2 and 10-11 hold read counts
    rows[scaled] *= np.float32(0.037)
    sums, read_counts = seed.dense_count_only_sums(rows)
    assert not read_counts
    for r in range(90):
        wide = rows[r].astype(np.float64)
        assert sums[0, r] == wide.sum() and sums[1, r] == seed.log_factorial(wide).sum(), r
    assert seed.dense_count_only_sums(rows[~scaled])[1]


def test_dense_read_counts_are_summed_as_the_float_sums_give_them():
    """Dense rows of read counts are summed as integers and looked up in the table, a cache-sized block of rows at a
    time without a float64 copy: the same bits as the float64 sums of ``log_factorial``. A block holding anything else
    (a fraction, NaN, a negative, a count beyond the table, inf) takes the float path, and the rows are then not all
    read counts, so the value screen sees their values (``every_nonzero``)."""
    rng = np.random.default_rng(11)
    counts = rng.poisson(2.0, size=(100, 700)).astype(np.float32)
    counts[3, 5] = -0.0
    for bad in (None, 0.5, np.nan, -1.0, 16384.0, np.inf, 16383.0):
        rows = counts.copy()
        if bad is not None:
            rows[60, 7] = bad
        sums, read_counts = seed.dense_count_only_sums(rows)
        wide = rows.astype(np.float64)
        assert read_counts == (bad is None or bad == 16383.0), bad
        np.testing.assert_array_equal(sums[0], wide.sum(-1))
        np.testing.assert_array_equal(sums[1], seed.log_factorial(wide).sum(-1))
        terms = seed.count_terms(rows.reshape(50, 2, 700))
        assert terms.dense.all() and terms.dense_read_counts == read_counts
        screened = terms.every_nonzero(rows)
        assert screened is (terms.counts if read_counts else None)


def test_log_factorial_of_non_integer_counts_is_one_function_of_each_value_near_mpmath():
    """A normalised (non-integer) track: every count off the table gets ``lgamma.lgamma`` of ``k + 1``, whatever the
    other counts (many or few, in runs of equal values or not); within a few ulps of 40-digit mpmath, and within 1e-14
    where the value is near 0 (``k`` near 0 or 1, as math.lgamma); poles, infinities and NaN as torch gives them."""
    rng = np.random.default_rng(7)
    many = rng.gamma(0.5, 3.0, size=20000)
    runs = np.repeat(many[:2000], rng.integers(1, 30, size=2000))
    alone = np.array([seed.log_factorial(np.array([k]))[0] for k in many[:3000]])
    np.testing.assert_array_equal(seed.log_factorial(many)[:3000], alone)  # chunks: the same bits
    np.testing.assert_array_equal(seed.log_factorial(runs), np.repeat(seed.log_factorial(many[:2000]),
                                                                      np.diff(np.flatnonzero(np.diff(runs, prepend=-1)),
                                                                              append=len(runs))))
    np.testing.assert_array_equal(seed.log_factorial(np.concatenate([many[:50], [3.0, 20000.0]]))[:50], alone[:50])
    mpmath.mp.dps = 40
    near = np.concatenate([many[:400], 10.0 ** rng.uniform(-15, -1, 200), 1 + 10.0 ** rng.uniform(-15, -1, 200),
                           1 - 10.0 ** rng.uniform(-15, -1, 200), rng.uniform(0, 1e6, 100)])
    got = seed.log_factorial(near)
    want = np.array([float(mpmath.loggamma(mpmath.mpf(float(k)) + 1)) for k in near])
    assert np.all(np.abs(got - want) <= np.maximum(8 * np.spacing(np.abs(want)), 1e-14))
    hostile = np.concatenate([np.full(5000, 0.5), [np.inf, np.nan, -1.0, 1e300]])
    np.testing.assert_array_equal(seed.log_factorial(hostile)[-4:],
                                  torch.lgamma(torch.tensor([np.inf, np.nan, 0.0, 1e300 + 1], dtype=torch.float64)).numpy())


def test_lgamma_is_within_a_few_ulps_and_cpythons_math_lgamma_away_from_its_zeros():
    """``lgamma.lgamma``: from 3.5 up it equals ``math.lgamma`` (the algorithm it follows) for all but a few values in
    1,000, those within 2 ulps (numpy's ``log`` against the C library's); below (the series near the zeros 1 and 2,
    where math.lgamma is off by 7e-15 on values of 1e-12) within 8 ulps of 40-digit mpmath; negative non-integers
    (reflection) within 1e-13; mpmath at the special points; +inf where math raises."""
    rng = np.random.default_rng(11)
    beyond = np.concatenate([rng.uniform(3.5, 50, 20000), 10.0 ** rng.uniform(1, 300, 10000),
                             16385 + rng.integers(0, 10 ** 8, 3000).astype(float)])
    got, want = lgamma_module.lgamma(beyond), np.array([math.lgamma(v) for v in beyond])
    assert np.mean(got == want) > 0.99 and np.all(np.abs(got - want) <= 2 * np.spacing(np.abs(want)))
    mpmath.mp.dps = 40
    near = np.concatenate([rng.uniform(1e-19, 3.5, 1500), 1 + 10.0 ** rng.uniform(-15, -0.3, 300),
                           1 - 10.0 ** rng.uniform(-15, -0.3, 300), 2 + 10.0 ** rng.uniform(-15, -0.3, 300),
                           2 - 10.0 ** rng.uniform(-15, -0.3, 300), [0.5, 1.5, 2.5, 3.5 - 1e-15, 1e-21]])
    exact = np.array([float(mpmath.loggamma(mpmath.mpf(float(v)))) for v in near])
    assert np.all(np.abs(lgamma_module.lgamma(near) - exact) <= 8 * np.spacing(np.abs(exact)))
    negative = -rng.uniform(0, 40, 2000)
    exact = np.array([float(mpmath.log(abs(mpmath.gamma(mpmath.mpf(float(v)))))) for v in negative])
    assert np.all(np.abs(lgamma_module.lgamma(negative) - exact) <= 1e-13 * np.maximum(1, np.abs(exact)))
    assert lgamma_module.lgamma(np.zeros((0, 3))).shape == (0, 3) and lgamma_module.lgamma(np.array(2.5)).shape == ()
    special = np.array([0.0, -0.0, -3.0, 1.0, 2.0, 1e-21, -1e-21, 2.6e305, np.inf, -np.inf, np.nan, 0.5, -0.5])
    out = lgamma_module.lgamma(special)
    assert list(out[:3]) == [np.inf] * 3 and list(out[3:5]) == [0.0, 0.0] and not np.signbit(out[3:5]).any()
    assert out[5] == out[6] == pytest.approx(-np.log(1e-21), rel=1e-15)
    assert list(out[7:10]) == [np.inf] * 3 and np.isnan(out[10])
    assert out[11] == pytest.approx(0.5 * np.log(np.pi), rel=1e-15)
    assert out[12] == pytest.approx(float(mpmath.log(abs(mpmath.gamma(-0.5)))), rel=1e-15)


@pytest.mark.parametrize("slots", [1 << 12, 4], ids=["table", "colliding-slots"])
def test_lgamma_of_a_few_distinct_values_is_looked_up_with_the_same_bits(monkeypatch, slots):
    """Values drawn from a few distinct ones (read counts times a scale, as a CPM track holds) get lgamma once per
    distinct value, looked up by their bits: every value the bits of the direct computation, NaN payloads, -0.0, poles,
    infinities, a tail of rare values and values sharing a slot (computed directly) included; values without repeats
    are computed directly."""
    monkeypatch.setattr(lgamma_module, "BY_VALUE_SLOTS", slots)
    rng = np.random.default_rng(13)
    odd_nan = np.array([0x7FF8000000000123], np.uint64).view(np.float64)[0]
    pool = np.concatenate([rng.poisson(4, 40) * np.float32(0.037) + 1.0,
                           [np.nan, odd_nan, np.inf, -np.inf, 0.0, -0.0, -2.0, -1.5, 1.0, 2.0, 1e-30, 3.5, 2.6e305]])
    for n in (lgamma_module.BY_VALUE_FROM, 50_000):
        values = rng.choice(pool, n)
        values[rng.integers(0, n, 40)] = rng.uniform(0, 100, 40)  # rare values, outside any sample
        looked_up = lgamma_module._lgamma_by_value(values)
        assert looked_up is not None
        np.testing.assert_array_equal(looked_up.view(np.uint64), lgamma_module._lgamma_pieces(values).view(np.uint64))
        np.testing.assert_array_equal(lgamma_module.lgamma(values.reshape(2, -1)).view(np.uint64),
                                      looked_up.reshape(2, -1).view(np.uint64))
    assert lgamma_module._lgamma_by_value(rng.uniform(0, 50, 20_000)) is None


def test_logit_terms_flag_every_non_finite_logit_and_equal_the_shifted_logsumexp():
    """``logit_terms`` (the reading thread's work) gives the same shift and rest as ``shifted_logsumexp`` and says
    exactly which regions hold a NaN, +inf or -inf logit (the value screen uses it instead of its own pass)."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, size=(300, 2, 40)).astype(np.float32)
    logits[7, 1, 3], logits[50, 0, 0], logits[99, 1, 39], logits[200] = np.nan, np.inf, -np.inf, -np.inf
    logits[201, 0] = 1e30  # finite but large: shifted, not flagged
    terms = seed.logit_terms(logits)
    shift, rest = seed.shifted_logsumexp(logits)
    np.testing.assert_array_equal(terms.shift, shift)
    np.testing.assert_array_equal(terms.rest, rest)
    np.testing.assert_array_equal(terms.finite, np.isfinite(logits).all(axis=(1, 2)))
    assert list(np.flatnonzero(~terms.finite)) == [7, 50, 99, 200]
    observed = rng.poisson(1.0, size=logits.shape).astype(np.float32)
    finite = terms.finite
    given = seed.mnll_per_region(logits[finite], observed[finite], seed.logit_terms(logits[finite]))
    for got, want in zip(given, seed.mnll_per_region(logits[finite], observed[finite])):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("share", [0.002, 0.12, 0.6])
def test_count_terms_equal_a_row_by_row_reference(dtype, share):
    """``count_terms`` against a row-by-row float64 reference, in batches with few nonzero counts (each row's found
    from where the batch's fall) and many (dense rows found first): empty rows, rows one count either side of
    ``DENSE_ABOVE``, dense rows, -0.0, fractions and NaN; the same positions, rows and values, sums to 1e-15."""
    rng = np.random.default_rng(12)
    n, length = 64, 1000
    observed = np.where(rng.random((n, 2, length)) < share, rng.poisson(3.0, (n, 2, length)) + 1, 0).astype(dtype)
    rows = observed.reshape(-1, length)
    limit = int(seed.DENSE_ABOVE * length)
    for r, k in ((3, limit), (4, limit + 1), (5, length), (6, 0), (9, limit + 40)):
        rows[r] = 0
        rows[r, rng.choice(length, k, replace=False)] = rng.integers(1, 9, k)
    if dtype != np.int32:
        rows[7, :5] = [-0.0, 0.5, 2.25, np.nan, 1e5]  # fractions, NaN, beyond the log-factorial table
        rows[4, 0] = 0.75  # a dense row holding a fraction
    terms = seed.count_terms(observed)
    per_row = [np.flatnonzero(row) for row in rows]
    dense = np.array([len(p) > seed.DENSE_ABOVE * length for p in per_row])
    np.testing.assert_array_equal(terms.dense, dense)
    assert dense[[4, 5, 9]].all() and not dense[[3, 6]].any()
    where = np.concatenate([r * length + p for r, p in enumerate(per_row) if not dense[r]] + [np.zeros(0, np.int64)])
    np.testing.assert_array_equal(terms.where, where)
    np.testing.assert_array_equal(terms.counts, rows.reshape(-1)[where].astype(np.float64))
    assert terms.counts.dtype == np.float64
    np.testing.assert_array_equal(terms.first, np.searchsorted(where, np.arange(len(rows)) * length))
    wide = rows.astype(np.float64)
    totals = [wide[r].sum() if dense[r] else wide[r, p].sum() for r, p in enumerate(per_row)]
    factorials = [sum(math.lgamma(k + 1) for k in (wide[r] if dense[r] else wide[r, p])) for r, p in enumerate(per_row)]
    np.testing.assert_allclose(terms.totals, totals, rtol=1e-15, atol=0)
    np.testing.assert_allclose(terms.log_factorials, factorials, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("length", [1, 7, 1000])
def test_count_terms_pickled_fit_in_count_terms_bytes_at_the_densest_sparse_rows(length):
    """``count_terms_bytes`` bounds the pickled terms (what a reading process sets aside beside each batch) for rows
    holding the most nonzero counts a sparse row can (``DENSE_ABOVE`` of its positions), dense rows and empty ones."""
    import pickle

    rng = np.random.default_rng(4)
    observed = np.zeros((1024, 2, length), dtype=np.float32)
    most = int(seed.DENSE_ABOVE * length)
    for row in observed.reshape(-1, length)[:2000]:
        row[rng.choice(length, most, replace=False)] = rng.integers(1, 50, most)
    observed[1000:] = 3.0  # dense rows
    terms = seed.count_terms(observed)
    assert len(terms.where) == 2000 * most and terms.dense.sum() == 48
    assert len(pickle.dumps(terms, protocol=pickle.HIGHEST_PROTOCOL)) <= seed.count_terms_bytes(observed.shape)


@pytest.mark.parametrize("n_tracks, groups", [(2, [[0], [1]]), (3, [[0, 2], [1]]), (4, [[0], [1], [2], [3]]),
                                              (1, [[0]])])
def test_count_terms_of_groups_of_tracks_interleave_into_the_whole_batchs(n_tracks, groups):
    """``interleaved_count_terms`` of each group's ``count_terms`` (what the reading process of each file computes)
    is ``count_terms`` of the whole batch, every array bit for bit: sparse and dense rows, empty rows, non-integer
    and NaN counts, rows all dense or none."""
    rng = np.random.default_rng(n_tracks)
    for density in (0.02, 0.3, 1.0):
        observed = (rng.poisson(3.0, (41, n_tracks, 60)) * (rng.random((41, n_tracks, 60)) < density)).astype(np.float32)
        observed[4] = 0
        observed[6, 0] *= np.float32(0.37)  # a normalised row
        observed[9, -1, 5] = np.nan
        whole = seed.count_terms(observed)
        parts = [seed.count_terms(observed[:, group]) for group in groups]
        joined = seed.interleaved_count_terms(parts, groups, n_tracks, observed.shape[-1])
        assert joined.dense_read_counts == whole.dense_read_counts and joined.read_counts == whole.read_counts
        for name in ("where", "first", "counts", "dense", "totals", "log_factorials"):
            got, want = getattr(joined, name), getattr(whole, name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert got.tobytes() == want.tobytes(), name


def test_count_terms_say_whether_every_count_is_a_read_count():
    """``read_counts``: every count of the batch, in sparse and dense rows, an integer of the log-factorial table (so
    its totals are exact in any order of summing); a fraction, a NaN or a negative count anywhere makes it False,
    and the terms of a batch joined from its files' terms say the same."""
    rng = np.random.default_rng(3)
    sparse = (rng.poisson(2.0, (30, 2, 80)) * (rng.random((30, 2, 80)) < 0.05)).astype(np.float32)
    dense = rng.poisson(2.0, (30, 2, 80)).astype(np.float32) + 1
    for observed in (sparse, dense, np.concatenate([sparse, dense])):
        assert seed.count_terms(observed).read_counts
        for where, value in (((3, 1, 7), 0.5), ((4, 0, 2), np.nan), ((5, 1, 1), -1.0)):
            spoiled = observed.copy()
            spoiled[where] = value
            assert not seed.count_terms(spoiled).read_counts, value
            groups = [[0], [1]]
            parts = [seed.count_terms(spoiled[:, group]) for group in groups]
            assert not seed.interleaved_count_terms(parts, groups, 2, spoiled.shape[-1]).read_counts
        parts = [seed.count_terms(observed[:, [s]]) for s in (0, 1)]
        assert seed.interleaved_count_terms(parts, [[0], [1]], 2, observed.shape[-1]).read_counts
