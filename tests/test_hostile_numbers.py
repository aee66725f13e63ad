"""Numbers that cannot go silently wrong (issue 12): hostile but finite logits are scored exactly, every
non-finite input value and every overflow follows ``--nonfinite``, option values are checked before any file
is opened, complex or text truth is refused, and ``summary.json`` never holds inf or NaN.

The exact references are written here with mpmath (50 digits, from the float64 values as stored), or are
analytic (a shift of every logit leaves every softmax unchanged). Library attacks (fast) check the exact
number or message; CLI attacks (slow) check the exit code, one ``bpnet-eval: error:`` line naming the file and
the region, no traceback and no report.
"""

import json

import h5py
import mpmath
import numpy as np
import pytest
import torch
from scipy.special import gammaln

import bpnet_eval
from bpnet_eval import InputError, Policies, UsageError
from bpnet_eval.losses import (MNLLLoss, count_sums, dense_count_sums, joint_log_softmax,
                               mixture_loss_per_region, mnll_per_region)
from bpnet_eval.options import ReadOptions, ScoreOptions
from tests.support.cases import make_case, write_bigwig, write_predictions
from tests.support.checks import assert_one_line_error

REPORT_FILES = ("summary.json", "regions.tsv", "summary.tsv", "skipped.tsv")
RTOL = 1e-6  # what the README promises for --dtype float64
API = {"device": "cpu", "read_workers": 0}


# ------------------------------------------------------------------------------------------- references
def exact_mnll(logits, counts):
    """Joint (one multinomial over S*L) and per-track MNLL of one region, 50 digits, from the stored values."""
    mpmath.mp.dps = 50
    z = [[mpmath.mpf(float(v)) for v in track] for track in np.asarray(logits, dtype=np.float64)]
    k = [[mpmath.mpf(float(v)) for v in track] for track in np.asarray(counts, dtype=np.float64)]

    def mnll(zs, ks):
        top = max(zs)
        lse = top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in zs))
        total = mpmath.fsum(ks)
        return (-mpmath.loggamma(total + 1) + mpmath.fsum(mpmath.loggamma(c + 1) for c in ks)
                - mpmath.fsum(c * (v - lse) for c, v in zip(ks, zs) if c))

    joint = mnll([v for track in z for v in track], [c for track in k for c in track])
    return float(joint), [float(mnll(zs, ks)) for zs, ks in zip(z, k)]


def exact_count_loss(logcount, counts):
    mpmath.mp.dps = 50
    return float((mpmath.log1p(mpmath.mpf(float(np.sum(counts, dtype=np.float64)))) - mpmath.mpf(float(logcount))) ** 2)


def counts_for(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(3.0, size=shape).astype(np.float64)


def one_huge_logit(counts, rng):
    z = rng.normal(0, 2, size=counts.shape)
    z[0, 7] = 1e30  # counts elsewhere: log-softmax 0 at the huge logit, -(1e30 - z_i) elsewhere
    return z


def offset_logits(offset):
    def make(counts, rng):  # on a grid of 1/8, so z + offset is stored exactly (up to |offset| 1e15)
        return np.round(rng.normal(0, 2, size=counts.shape) * 8) / 8 + offset
    return make


def minus_huge_mixed_with_zero(counts, rng):
    z = np.zeros(counts.shape)
    z[:, ::3] = -1e30  # counts at both kinds of position
    return z


def one_track_huge(counts, rng):
    z = rng.normal(0, 2, size=counts.shape)
    z[0] += 1e30  # the joint softmax gives track 1 almost no mass; each track's own softmax is unchanged
    return z


def all_huge(counts, rng):
    return np.full(counts.shape, 1e30)  # the attack that gave -76.6: every logit of the region 1e30


HOSTILE_LOGITS = {"one logit 1e30": one_huge_logit, "offset 1e12": offset_logits(1e12),
                  "offset -1e12": offset_logits(-1e12), "offset 1e15": offset_logits(1e15),
                  "offset 5000": offset_logits(5000.0), "-1e30 mixed with 0": minus_huge_mixed_with_zero,
                  "one track +1e30": one_track_huge, "every logit 1e30": all_huge}


def assert_exact(got, want, rtol=RTOL):
    assert np.isfinite(got) and abs(got - want) <= rtol * abs(want), (got, want, abs(got - want) / abs(want))


# Attacks the fast MNLL got wrong (c100a98); the others are exact there too and are checked with them below.
BROKEN = ["offset 1e12", "offset -1e12", "offset 1e15", "one track +1e30", "every logit 1e30"]


# ------------------------------------------------------------------------- 1. exact for any finite logits
@pytest.mark.parametrize("attack", BROKEN, ids=str)
def test_fast_mnll_is_exact_for_hostile_logits(attack):
    counts = counts_for((2, 60), seed=1)
    logits = HOSTILE_LOGITS[attack](counts, np.random.default_rng(2))
    joint, per_track, _ = mnll_per_region(torch.tensor(logits[None]), torch.tensor(counts[None]))
    want_joint, want_tracks = exact_mnll(logits, counts)
    assert_exact(joint.item(), want_joint)
    for s in range(2):
        assert_exact(per_track[0, s].item(), want_tracks[s])


@pytest.mark.parametrize("offset", [1e12, -1e12, 1e15])
def test_an_offset_on_every_logit_changes_no_loss(offset):
    """Analytic: ``log_softmax(z + c) = log_softmax(z)``, so every MNLL equals that of the unshifted logits."""
    counts = counts_for((3, 2, 80), seed=3)
    base = np.round(np.random.default_rng(4).normal(0, 3, size=counts.shape) * 8) / 8
    k = torch.tensor(counts)
    plain, plain_tracks, _ = mnll_per_region(torch.tensor(base), k)
    shifted, shifted_tracks, _ = mnll_per_region(torch.tensor(base + offset), k)
    np.testing.assert_allclose(shifted.numpy(), plain.numpy(), rtol=1e-12)
    np.testing.assert_allclose(shifted_tracks.numpy(), plain_tracks.numpy(), rtol=1e-12)
    seed_profile, _, _ = mixture_loss_per_region(k, torch.tensor(base + offset), torch.zeros(3, 1))
    np.testing.assert_allclose(seed_profile.numpy(), plain.numpy(), rtol=1e-9)
    seed = MNLLLoss(joint_log_softmax(torch.tensor(base + offset)).reshape(3, -1), k.reshape(3, -1))
    for row in range(3):  # the seed's MNLLLoss of torch's log_softmax, against the 50-digit reference
        assert_exact(seed[row].item(), exact_mnll(base[row] + offset, counts[row])[0])


def test_the_gpus_dense_sums_take_the_same_shift_as_the_sparse_ones():
    """On a GPU the count sums are dense (``dense_count_sums``); shifted, they equal the CPU's sparse sums."""
    from bpnet_eval.losses import shifted_track_logsumexp  # new; imported here so the other attacks run without it

    counts = counts_for((5, 2, 30), seed=15)
    logits = torch.tensor(offset_logits(1e12)(counts, np.random.default_rng(16)))
    shift, _ = shifted_track_logsumexp(logits, torch.float64)
    assert (shift == logits.amax(dim=-1)).all()
    sparse = count_sums(torch.tensor(counts), logits, torch.float64, shift)
    dense = dense_count_sums(torch.tensor(counts), logits, torch.float64, shift)
    for got, want in zip(dense, sparse):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-9)
    exact = (counts * (logits.numpy() - shift.numpy()[..., None])).sum(-1)
    np.testing.assert_allclose(sparse[2].numpy(), exact, rtol=1e-12)


def test_every_logit_1e30_scores_the_uniform_profile_through_score():
    """The attack: 1e30 on every logit of one region gave profile_mnll -76.6 (an MNLL is never negative)."""
    case_counts = counts_for((6, 2, 50), seed=7)
    logits = np.random.default_rng(8).normal(0, 1, size=case_counts.shape).astype(np.float32)
    logits[4] = 1e30
    logcounts = np.log1p(case_counts.sum(axis=(1, 2)))[:, None]
    result = bpnet_eval.score((logits, logcounts), case_counts, **API)
    uniform = np.zeros((2, 50))
    want, want_tracks = exact_mnll(uniform, case_counts[4])
    assert_exact(result.columns["profile_mnll"][4], want)
    assert_exact(result.columns["profile_mnll_plus"][4], want_tracks[0])
    assert_exact(result.columns["mixture_loss"][4], want + result.columns["count_log1p_mse"][4])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_seed_column_is_exact_through_score_for_a_batch_of_hostile_regions(dtype, monkeypatch):
    """Hostile regions among ordinary ones, past the first CPU block of 128 regions, stored float64."""
    from bpnet_eval import seed

    monkeypatch.setattr(seed, "LOGSUMEXP_BLOCK_VALUES", 128 * 2 * 30)  # blocks of 128 regions of 2 x 30
    n = 300
    counts = counts_for((n, 2, 30), seed=9)
    rng = np.random.default_rng(10)
    logits = rng.normal(0, 2, size=counts.shape)
    hostile = {}
    for k, (name, make) in enumerate(HOSTILE_LOGITS.items()):
        row = 131 + 17 * k
        logits[row] = make(counts[row], rng)
        hostile[row] = name
    logcounts = np.log1p(counts.sum(axis=(1, 2)))[:, None] + rng.normal(0, 0.5, size=(n, 1))
    result = bpnet_eval.score((logits, logcounts), counts, dtype=dtype, count_loss_weight=0.7, **API)
    rtol = RTOL if dtype == "float64" else 1e-4  # float32: the documented precision
    huge = next(row for row, name in hostile.items() if name == "one logit 1e30")
    gap = counts[huge, 0] @ (1e30 - logits[huge, 0]) + counts[huge, 1] @ (1e30 - logits[huge, 1])
    # analytic: log-softmax 0 at the huge logit, -(1e30 - z_i) elsewhere
    analytic = -gammaln(counts[huge].sum() + 1) + gammaln(counts[huge] + 1).sum() + gap
    assert_exact(result.columns["profile_mnll"][huge], analytic, 1e-12 if dtype == "float64" else rtol)
    for row in [0, 1, 130, *hostile]:
        want, want_tracks = exact_mnll(logits[row], counts[row])
        count_loss = exact_count_loss(logcounts[row, 0], counts[row])
        assert_exact(result.columns["profile_mnll"][row], want, rtol)
        assert_exact(result.columns["profile_mnll_plus"][row], want_tracks[0], rtol)
        assert_exact(result.columns["profile_mnll_minus"][row], want_tracks[1], rtol)
        assert_exact(result.columns["mixture_loss"][row], want + 0.7 * count_loss, rtol)


def test_profile_metrics_in_float32_keep_the_digits_of_float64_logits_offset_by_1e12():
    """float32 scoring of float64 logits shifted by 1e12 kept no digit of the logits (all equal in float32)."""
    counts = counts_for((4, 2, 40), seed=11)
    base = np.round(np.random.default_rng(12).normal(0, 2, size=counts.shape) * 8) / 8
    logcounts = np.log1p(counts.sum(axis=(1, 2)))[:, None]
    plain = bpnet_eval.score((base, logcounts), counts, dtype="float32", metrics="all", **API).columns
    shifted = bpnet_eval.score((base + 1e12, logcounts), counts, dtype="float32", metrics="all", **API).columns
    for name in ("profile_mnll", "profile_cross_entropy", "profile_jsd_distance", "profile_pearson",
                 "profile_mnll_per_base_plus"):
        np.testing.assert_allclose(shifted[name], plain[name], rtol=1e-4, err_msg=name)
    assert bpnet_eval.score((base + 1e12, logcounts), counts, dtype="float32", metrics="all",
                            **API).summary["profile_auprc"] == \
        bpnet_eval.score((base, logcounts), counts, dtype="float32", metrics="all", **API).summary["profile_auprc"]


def exact_jsd(logits, counts):
    """JSD (natural log) of softmax(logits) and counts / their sum over the last axis, 50 digits, from the stored
    values: nothing underflows."""
    mpmath.mp.dps = 50
    z = [mpmath.mpf(float(v)) for v in np.ravel(logits)]
    top = max(z)
    weights = [mpmath.exp(v - top) for v in z]
    p = [w / mpmath.fsum(weights) for w in weights]
    q = [mpmath.mpf(float(k)) / mpmath.mpf(float(np.sum(counts))) for k in np.ravel(counts)]
    kl = lambda a: mpmath.fsum(x * mpmath.log(x / ((x + y) / 2)) for x, y in zip(a, p if a is q else q) if x > 0)
    return float((kl(p) + kl(q)) / 2)


@pytest.mark.parametrize("dtype,below", [("float32", 103.3), ("float64", 744.4)])
def test_a_predicted_probability_at_the_smallest_subnormal_is_scored_not_an_overflow(dtype, below):
    """A logit ``below`` the region's log-sum-exp gives the smallest subnormal probability in ``dtype``; where no
    read fell, the JSD's midpoint there is half of it, which rounds to 0 (the term written out is inf): the JSD
    is finite and exact, not an overflow."""
    counts = counts_for((3, 2, 40), seed=21)
    logits = np.random.default_rng(22).normal(0, 1, size=counts.shape).astype(np.float32).astype(np.float64)
    counts[1, 0, 7] = 0
    others = np.delete(logits[1, 0], 7)
    logits[1, 0, 7] = np.float32(others.max() + np.log(np.exp(others - others.max()).sum()) - below)
    probability = torch.softmax(torch.as_tensor(logits[1, 0], dtype=getattr(torch, dtype)), dim=-1)[7]
    assert probability == torch.finfo(probability.dtype).tiny * torch.finfo(probability.dtype).eps
    logcounts = np.log1p(counts.sum(axis=(1, 2)))[:, None]
    columns = bpnet_eval.score((logits, logcounts), counts, dtype=dtype, metrics="all", **API).columns
    tolerance = 1e-4 if dtype == "float32" else 1e-9
    for name in ("profile_jsd_divergence_plus", "profile_jsd_divergence", "profile_jsd_shuffled_plus"):
        assert np.all(np.isfinite(columns[name])), name
    for row in range(3):
        np.testing.assert_allclose(columns["profile_jsd_divergence_plus"][row],
                                   exact_jsd(logits[row, 0], counts[row, 0]), rtol=tolerance)
        np.testing.assert_allclose(columns["profile_jsd_divergence"][row], exact_jsd(logits[row], counts[row]),
                                   rtol=tolerance)


# --------------------------------------------------------------- 2. non-finite inputs follow --nonfinite
def h5_truth(path, observed, name="observed/counts"):
    with h5py.File(path, "w") as h5:
        h5.create_dataset(name, data=observed)
    return str(path)


def small_case(n=12, seed=0):
    counts = counts_for((n, 2, 20), seed=seed)
    logits = np.random.default_rng(seed + 1).normal(0, 1, size=counts.shape)
    return logits, np.log1p(counts.sum(axis=(1, 2)))[:, None], counts


@pytest.mark.parametrize("value,shown", [(np.inf, "inf"), (np.nan, "NaN"), (-np.inf, "-inf"), (1e39, "inf")],
                         ids=["inf", "nan", "-inf", "beyond-float32"])
def test_a_non_finite_value_in_hdf5_truth_is_an_error_naming_file_and_region(tmp_path, value, shown):
    logits, logcounts, counts = small_case()
    counts[5, 1, 3] = value
    truth = h5_truth(tmp_path / "truth.h5", counts)
    with pytest.raises(InputError) as error:
        bpnet_eval.score((logits, logcounts), truth, **API)
    message = str(error.value)
    assert message.startswith(f"{truth}: observed value {shown} in region 6 is not finite"), message
    assert "--nonfinite skip" in message
    problems = bpnet_eval.check((logits, logcounts), truth).problems
    assert [p.message for p in problems] == [message]


def test_nan_in_observed_arrays_is_an_error_not_zero():
    logits, logcounts, counts = small_case()
    counts[2, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"observed value NaN in region 3 is not finite"):
        bpnet_eval.score((logits, logcounts), counts, **API)


def test_nonfinite_skip_skips_a_region_with_an_inf_observed_value_and_scores_the_rest(tmp_path):
    logits, logcounts, counts = small_case()
    clean = bpnet_eval.score((logits, logcounts), counts, **API).columns
    bad = counts.copy()
    bad[5, 1, 3] = np.inf
    truth = h5_truth(tmp_path / "truth.h5", bad)
    result = bpnet_eval.score((logits, logcounts), truth, policies=Policies(nonfinite="skip"), **API)
    assert result.summary["skipped"] == [{"row": 6, "region": "row 6",
                                          "reason": f"non-finite observed value in {truth}"}]
    assert result.summary["n_regions"] == 11
    keep = np.arange(12) != 5
    for name, values in result.columns.items():
        assert np.isnan(values[5])
        np.testing.assert_array_equal(values[keep], clean[name][keep])


def test_log_counts_of_minus_1e200_overflow_the_count_loss_and_name_the_region():
    logits, logcounts, counts = small_case()
    logcounts[4, 0] = -1e200
    with pytest.raises(InputError) as error:
        bpnet_eval.score((logits, logcounts), counts, **API)
    assert str(error.value).startswith("<array>: count_log1p_mse = inf in region 5: the inputs are finite but the "
                                       "value overflows float64 (1 region(s) so far)")
    assert [p.message for p in bpnet_eval.check((logits, logcounts), counts).problems] == [str(error.value)]
    skipped = bpnet_eval.score((logits, logcounts), counts, policies=Policies(nonfinite="skip"), **API)
    assert logcounts[4, 0] == -1e200  # the caller's arrays are left as they were
    assert skipped.summary["skipped"] == [{"row": 5, "region": "row 5",
                                           "reason": "count_log1p_mse = inf: a computed value overflowed float64"}]
    assert np.isnan(skipped.columns["profile_mnll"][4]) and np.isfinite(skipped.columns["profile_mnll"][:4]).all()
    json.dumps(skipped.summary, allow_nan=False)
    listed = bpnet_eval.check((logits, logcounts), counts, policies=Policies(nonfinite="skip"))
    assert listed.problems == [] and listed.skipped == {4: "count_log1p_mse = inf: a computed value overflowed float64"}


def test_logits_at_both_ends_of_float64_overflow_the_mnll_and_name_the_region():
    logits, logcounts, counts = small_case()
    logits[7, 0, :] = -1.7e308
    logits[7, 0, 0] = 1.7e308  # z - max overflows to -inf where counts were observed
    counts[7, 0, 1] = 2
    with pytest.raises(InputError, match=r"^<array>: profile_mnll = (inf|NaN) in region 8: the inputs are finite"):
        bpnet_eval.score((logits, logcounts), counts, **API)


def test_log_counts_finite_in_float64_overflow_float32():
    logits, logcounts, counts = small_case()
    logcounts[3, 0] = 1e20  # (1e20)^2 is 1e40: finite in float64, inf in float32
    assert np.isfinite(bpnet_eval.score((logits, logcounts), counts, **API).columns["count_log1p_mse"]).all()
    with pytest.raises(InputError, match=r"count_log1p_mse = inf in region 4: the inputs are finite but the value "
                                         r"overflows float32") as error:
        bpnet_eval.score((logits, logcounts), counts, dtype="float32", **API)
    # check takes score's options, so it finds what score with them would stop on
    assert bpnet_eval.check((logits, logcounts), counts).problems == []
    assert [p.message for p in bpnet_eval.check((logits, logcounts), counts, dtype="float32").problems] == [
        str(error.value)]


@pytest.mark.slow
def test_cli_check_with_scores_options_finds_an_overflow_only_they_cause(tmp_path):
    from tests.support.cases import make_case, write_predictions
    from tests.support.cli import run_cli

    case = make_case(tmp_path, n=20)
    logcounts = case.logcounts.copy()
    logcounts[3] = 1e20  # finite in float64; its squared error overflows float32
    preds = write_predictions(tmp_path / "huge.h5", case.logits, logcounts, case.chrom, case.start, case.end)
    assert run_cli("check", preds, *case.bigwigs).returncode == 0
    done = run_cli("check", preds, *case.bigwigs, "--dtype", "float32")
    assert done.returncode == 3 and "count_log1p_mse = inf in" in done.stdout and "overflows float32" in done.stdout
    scored = run_cli("score", preds, *case.bigwigs, "--dtype", "float32", "--out", tmp_path / "r")
    assert scored.returncode == 3 and "overflows float32" in scored.stderr


def test_summary_statistics_that_overflow_are_null_with_a_warning_never_inf():
    """Every per-region count loss is finite (about 1.44e308) but their mean and the count MSE overflow."""
    logits, logcounts, counts = small_case()
    logcounts[:, 0] = 1.2e154
    result = bpnet_eval.score((logits, logcounts), counts, **API)
    text = json.dumps(result.summary, allow_nan=False)  # raised "Out of range float values" before
    stats = result.summary["metrics"]["count_log1p_mse"]
    values = result.columns["count_log1p_mse"]
    assert np.isfinite(values).all()
    assert stats["mean"] == pytest.approx(float(np.mean(values / 1e308)) * 1e308, rel=1e-12)
    assert result.summary["counts"]["mse"] is None and '"mse": null' in text
    assert "counts.mse is not finite (the values it summarises are too large: it overflowed float64); written " \
           "as null" in result.summary["warnings"]


# ----------------------------------------------------------------------- 3. option values, checked early
@pytest.mark.parametrize("options,message", [
    ({"count_loss_weight": float("nan")}, "--count-loss-weight must be a finite number >= 0, not nan"),
    ({"count_loss_weight": float("inf")}, "--count-loss-weight must be a finite number >= 0, not inf"),
    ({"count_loss_weight": -1.0}, "--count-loss-weight must be a finite number >= 0, not -1.0"),
    ({"smooth_sigma": float("nan")}, "--smooth-sigma must be a finite number > 0, not nan"),
    ({"smooth_sigma": float("inf")}, "--smooth-sigma must be a finite number > 0, not inf"),
    ({"smooth_width": 2.5}, "--smooth-width must be a whole number >= 1, not 2.5"),
    ({"track_names": ("a", "a")}, "--track-names: 'a' is given 2 times; give each track a different name"),
    ({"track_names": ("a\tb", "c")}, "--track-names: 'a\\tb' contains a tab; track names are column names of "
                                     "regions.tsv"),
    ({"track_names": ("a\nb", "c")}, "--track-names: 'a\\nb' contains a newline"),
    ({"track_names": ("a,b", "c")}, "--track-names: 'a,b' contains a comma"),
    ({"track_names": ("", "c")}, "--track-names: name 1 of 2 is empty; give one name per track"),
], ids=lambda v: repr(v) if isinstance(v, dict) else "")
def test_score_options_are_checked_when_built(options, message):
    with pytest.raises(UsageError) as error:
        ScoreOptions(**options)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5])
def test_pred_pseudocount_is_checked_when_built(value):
    with pytest.raises(UsageError, match=f"^--pred-pseudocount must be a finite number >= 0, not {value}$"):
        ReadOptions(pred_pseudocount=value)


# -------------------------------------------------------------------- 5. complex or text truth refused
@pytest.mark.parametrize("data,held", [(np.ones((12, 2, 20), dtype=np.complex128), "complex numbers"),
                                       (np.full((12, 20), "3", dtype="S1"), "text")], ids=["complex", "text"])
def test_complex_or_text_truth_is_refused_at_open(tmp_path, data, held):
    logits, logcounts, _ = small_case()
    truth = h5_truth(tmp_path / "truth.h5", data)
    with pytest.raises(InputError) as error:
        bpnet_eval.score((logits, logcounts), truth, **API)
    assert str(error.value).startswith(f"{truth}: 'observed/counts' holds {held} ")
    assert "observed counts must be real numbers" in str(error.value)


def test_complex_observed_arrays_are_refused():
    logits, logcounts, counts = small_case()
    with pytest.raises(UsageError, match="^the observed counts array holds complex numbers"):
        bpnet_eval.score((logits, logcounts), counts.astype(np.complex64), **API)


# ------------------------------------------------------------------------------------ CLI (slow)
def assert_no_report(out):
    assert not out.exists() or not any((out / name).exists() for name in REPORT_FILES)


def label(case, i):
    return f"{case.chrom[i]}:{case.start[i]}-{case.end[i]} (region {i + 1})"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One case, and files each carrying one attack."""
    tmp = tmp_path_factory.mktemp("hostile")
    case = make_case(tmp, n=20)
    files = {}
    logcounts = case.logcounts.astype(np.float64)
    logcounts[5, 0] = -1e200
    files["lc"] = write_predictions(tmp / "lc.h5", case.logits, logcounts, case.chrom, case.start, case.end)
    for name, value in (("inf", np.inf), ("nan", np.nan)):
        observed = case.observed.copy()
        observed[6, 1, 3] = value
        files[name] = tmp / f"{name}_truth.h5"
        h5_truth(files[name], observed)
    tracks = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
    for i in range(len(case.chrom)):
        tracks[case.chrom[i]][case.start[i]:case.end[i]] = case.observed[i, 0]
    tracks[case.chrom[9]][case.start[9] + 4] = np.inf
    files["inf_bw"] = write_bigwig(tmp / "inf_plus.bw", case.chrom_sizes, tracks)
    files["complex"] = tmp / "complex_truth.h5"
    h5_truth(files["complex"], case.observed.astype(np.complex64))
    return case, files


def cli_attacks(case, files):
    """(name, score arguments, exit code, fragments of the one error line)."""
    return [
        ("log counts -1e200", [files["lc"], *case.bigwigs], 3,
         [f"{files['lc']}: count_log1p_mse = inf in {label(case, 5)}", "overflows float64", "--nonfinite skip"]),
        ("+inf in HDF5 truth", [case.predictions, files["inf"]], 3,
         [f"{files['inf']}: observed value inf in {label(case, 6)} is not finite", "--nonfinite skip"]),
        ("NaN in HDF5 truth", [case.predictions, files["nan"]], 3,
         [f"{files['nan']}: observed value NaN in {label(case, 6)} is not finite"]),
        ("+inf in a bigWig", [case.predictions, files["inf_bw"], case.bigwigs[1]], 3,
         [f"{files['inf_bw']}: observed value inf in {label(case, 9)} is not finite"]),
        ("complex truth", [case.predictions, files["complex"]], 3,
         [f"{files['complex']}: 'observed/counts' holds complex numbers"]),
    ]


CLI_ATTACK_NAMES = ["log counts -1e200", "+inf in HDF5 truth", "NaN in HDF5 truth", "+inf in a bigWig",
                    "complex truth"]


@pytest.mark.slow
@pytest.mark.parametrize("attack", CLI_ATTACK_NAMES)
def test_cli_score_stops_with_one_line_naming_file_and_region(forked, hostile, tmp_path, attack):
    case, files = hostile
    _, args, code, fragments = next(a for a in cli_attacks(case, files) if a[0] == attack)
    out = tmp_path / "out"
    result = forked("score", *args, "-o", out, "--quiet", "--no-plots")
    assert_one_line_error(result, code, *fragments)
    assert_no_report(out)


@pytest.mark.slow
@pytest.mark.parametrize("attack", CLI_ATTACK_NAMES)
def test_cli_check_finds_what_score_stops_on(forked, hostile, attack):
    case, files = hostile
    _, args, code, fragments = next(a for a in cli_attacks(case, files) if a[0] == attack)
    result = forked("check", *args)
    assert result.returncode == code and "problems: none" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    problems = result.stdout.split("problems: ", 1)[1]
    assert problems.startswith("1\n"), problems
    for fragment in fragments:
        assert fragment in problems


@pytest.mark.slow
@pytest.mark.parametrize("attack,reason", [("log counts -1e200", "count_log1p_mse = inf: a computed value "
                                                                  "overflowed float64"),
                                           ("+inf in a bigWig", "non-finite observed value in {inf_bw}")])
def test_cli_nonfinite_skip_lists_the_region_and_writes_a_clean_summary(forked, hostile, tmp_path, attack, reason):
    case, files = hostile
    _, args, _, _ = next(a for a in cli_attacks(case, files) if a[0] == attack)
    out = tmp_path / "out"
    result = forked("score", *args, "-o", out, "--quiet", "--no-plots", "--nonfinite", "skip")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    row = 5 if attack.startswith("log") else 9
    assert summary["skipped"] == [{"row": row + 1, "region": f"{case.chrom[row]}:{case.start[row]}-{case.end[row]}",
                                   "reason": reason.format(**files)}]
    assert summary["n_regions"] == 19 and summary["metrics"]["count_log1p_mse"]["max"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("option,fragment", [
    (["--count-loss-weight", "-1"], "--count-loss-weight must be a finite number >= 0, not -1.0"),
    (["--smooth", "predictions", "--smooth-sigma", "nan"], "--smooth-sigma must be a finite number > 0, not nan"),
    (["--track-names", "a,a"], "--track-names: 'a' is given 2 times"),
    (["--track-names", "a\tb,c"], "--track-names: 'a\\tb' contains a tab"),
    (["--track-names", "a\nb,c"], "--track-names: 'a\\nb' contains a newline"),
], ids=["negative-weight", "nan-sigma", "repeated-name", "tab-in-name", "newline-in-name"])
def test_cli_bad_option_values_exit_2_before_any_file_is_opened(forked, tmp_path, option, fragment):
    out = tmp_path / "out"
    result = forked("score", tmp_path / "missing.h5", tmp_path / "missing.bw", *option, "-o", out, "--quiet")
    assert_one_line_error(result, 2, fragment)
    assert "missing" not in result.stderr and not out.exists()


def test_the_regions_holding_a_non_integer_count_are_found_from_the_count_terms():
    """``CountTerms.non_integer_regions`` (the nonzero counts of sparse rows and the values of dense ones) flags
    exactly the regions whose counts are not all integers: fractions in sparse and in dense rows, of either track,
    NaN, and none in a clean batch."""
    from bpnet_eval.seed import count_terms

    rng = np.random.default_rng(9)
    for trial in range(40):
        n, tracks, length = int(rng.integers(1, 30)), int(rng.integers(1, 4)), int(rng.integers(1, 50))
        observed = rng.poisson(0.2, size=(n, tracks, length)).astype(np.float32)
        observed[rng.random((n, tracks)) < 0.3] += 1  # dense rows
        for _ in range(trial % 5):
            observed[rng.integers(n), rng.integers(tracks), rng.integers(length)] = rng.choice([0.5, 2.25, np.nan,
                                                                                               1e-3, 7.0])
        if trial % 7 == 0:
            observed *= 0.037  # a normalised track
        with np.errstate(invalid="ignore"):
            want = (observed != np.rint(observed)).any(axis=(1, 2))
        np.testing.assert_array_equal(count_terms(observed).non_integer_regions(observed), want)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_the_value_screen_from_the_nonzero_counts_equals_the_screen_of_the_whole_batch(policy):
    """The seed path hands the value screen the batch's nonzero counts (``seed.count_terms``) instead of the batch:
    the same problems, skipped rows and non-integer tally, for NaN, inf, negative and fractional values anywhere."""
    from types import SimpleNamespace

    from bpnet_eval.options import Policies
    from bpnet_eval.regions import Regions
    from bpnet_eval.seed import count_terms
    from bpnet_eval.validate import Findings, ValueScreen

    rng = np.random.default_rng(8)
    n, length = 40, 30
    regions = Regions(np.array(["chr1"] * n, dtype=object), np.arange(n) * 100, np.arange(n) * 100 + length)
    preds = SimpleNamespace(path="p.h5")
    truth = SimpleNamespace(paths=["plus.bw", "minus.bw"], n_tracks=2)
    gathered = 0
    for trial in range(60):
        observed = rng.poisson(0.1, size=(n, 2, length)).astype(np.float32)
        for _ in range(trial % 4):
            row, track, position = rng.integers(n), rng.integers(2), rng.integers(length)
            observed[row, track, position] = rng.choice([np.nan, np.inf, -2.0, 0.5, -np.inf])
        logits, logcounts = rng.normal(size=(n, 2, length)), np.zeros((n, 1))
        outcomes = []
        for _ in range(trial % 3 + trial // 20 * 10):  # dense rows (their values are screened whole), or many
            observed[rng.integers(n), rng.integers(2)] += 1
        counted = count_terms(observed)
        nonzeros = counted.every_nonzero(observed)
        gathered += nonzeros is not None and trial % 4 > 0
        for nonzero, non_integer in ((None, None), (nonzeros, lambda: counted.non_integer_regions(observed))):
            findings = Findings()
            screen = ValueScreen(findings, preds, truth, regions, Policies(nonfinite=policy), collect=True)
            skip = screen.screen(0, logits, logcounts, observed, None, nonzero, non_integer)
            screen.finish()
            outcomes.append((skip.tolist(), [p.message for p in findings.problems], findings.warnings,
                             dict(findings.skipped), screen.non_integer))
        assert outcomes[0] == outcomes[1], trial
    assert gathered >= 20  # most hostile batches were screened from their nonzero counts
