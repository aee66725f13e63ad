"""``score`` (Python API): every layout and truth kind, every per-region column and summary value
against an independent float64 computation (``tests.support.reference``)."""

import h5py
import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.pipeline import score
from tests.support.cases import make_case, write_predictions
from tests.support.reference import expected_columns

RTOL64, RTOL32 = 1e-6, 1e-4


def check_columns(result, case, weight=1.0, rtol=RTOL64, names=("plus", "minus")):
    expected = expected_columns(case.logits, case.logcounts, case.observed, weight)
    for column in ("observed_counts", "profile_mnll", "count_log1p_mse", "mixture_loss"):
        np.testing.assert_allclose(result.columns[column], expected[column], rtol=rtol, atol=1e-8, err_msg=column)
    if case.observed.shape[1] > 1:
        for s, name in enumerate(names):
            np.testing.assert_allclose(result.columns[f"profile_mnll_{name}"], expected["per_track"][:, s],
                                       rtol=rtol, atol=1e-8)


@pytest.mark.parametrize("layout", ["native", "dset", "bpreveal", "chrombpnet"])
def test_layouts_with_bigwig_truth(tmp_path, layout):
    case = make_case(tmp_path, layout=layout, n_tracks=1 if layout == "chrombpnet" else 2)
    result = score(str(case.predictions), [str(p) for p in case.bigwigs], device="cpu")
    if layout == "chrombpnet":  # probabilities: the stored softmax, so the same distribution to float precision
        check_columns(result, case, rtol=1e-5)
    else:
        check_columns(result, case)
    assert list(result.regions.chrom) == list(case.chrom)
    np.testing.assert_array_equal(result.regions.start, case.start)
    np.testing.assert_array_equal(result.regions.end, case.end)


def test_single_track_and_per_track_logcounts(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    single = make_case(tmp_path / "a", n_tracks=1)
    check_columns(score(str(single.predictions), [str(single.bigwigs[0])]), single)
    per_track = make_case(tmp_path / "b", per_track_logcounts=True)
    result = score(str(per_track.predictions), [str(p) for p in per_track.bigwigs])
    check_columns(result, per_track)
    for s, name in enumerate(("plus", "minus")):
        np.testing.assert_allclose(result.columns[f"predicted_logcounts_{name}"], per_track.logcounts[:, s], rtol=1e-7)
        np.testing.assert_allclose(result.columns[f"observed_counts_{name}"], per_track.observed[:, s].sum(-1))
    assert "predicted_logcounts" not in result.columns


def test_hdf5_truth_and_array_inputs_and_regions_file(tmp_path):
    case = make_case(tmp_path, layout="nocoords")
    truth = tmp_path / "truth.h5"
    with h5py.File(truth, "w") as h5:
        h5.create_dataset("observed/counts", data=np.swapaxes(case.observed, 1, 2))  # (N, L, S) also accepted
    check_columns(score(str(case.predictions), str(truth)), case)
    check_columns(score((case.logits, case.logcounts), case.observed), case)
    bed = tmp_path / "regions.bed"
    bed.write_text("# comment\ntrack name=x\n" + "".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
    check_columns(score(str(case.predictions), [str(p) for p in case.bigwigs], str(bed)), case)


def test_narrowpeak_windows_are_summit_centred(tmp_path):
    case = make_case(tmp_path, layout="nocoords")
    length = case.observed.shape[-1]
    peaks = tmp_path / "peaks.narrowPeak"
    # Peak intervals wider than L; summit offset puts the window exactly on the scored window.
    rows = [f"{c}\t{s - 100}\t{e + 300}\tp\t0\t.\t1\t1\t1\t{100 + length // 2}\n" for c, s, e in zip(case.chrom, case.start, case.end)]
    peaks.write_text("".join(rows))
    result = score(str(case.predictions), [str(p) for p in case.bigwigs], str(peaks))
    np.testing.assert_array_equal(result.regions.start, case.start)
    check_columns(result, case)


def test_float32_batch_sizes_and_weight(tmp_path):
    case = make_case(tmp_path, n=33)
    paths = [str(p) for p in case.bigwigs]
    check_columns(score(str(case.predictions), paths, dtype="float32", count_loss_weight=0.25), case, 0.25, RTOL32)
    reference = score(str(case.predictions), paths, batch_size=1024, count_loss_weight=3.0)
    for batch_size in (1, 5):
        other = score(str(case.predictions), paths, batch_size=batch_size, count_loss_weight=3.0)
        for name, values in reference.columns.items():
            np.testing.assert_array_equal(other.columns[name], values, err_msg=name)


def test_long_windows_get_fewer_regions_a_batch_by_default_and_the_same_numbers(tmp_path, monkeypatch):
    """By default a batch holds at most ``BATCH_VALUES`` values (``batch_regions``): 1024 regions of S x L <= 2048,
    fewer of longer windows, at least one; a given --batch-size is kept. The columns are the same either way."""
    from bpnet_eval import options

    assert options.batch_regions(None, 2, 1000) == 1024 and options.batch_regions(None, 1, 2048) == 1024
    assert options.batch_regions(None, 2, 10_000) == 104 and options.batch_regions(None, 8, 1000) == 262
    assert options.batch_regions(None, 2, 10**7) == 1 and options.batch_regions(7, 2, 10**7) == 7
    monkeypatch.setattr(options, "BATCH_VALUES", 6 * 2 * 50)  # six regions of 2 x 50 a batch here
    case = make_case(tmp_path, n=33)
    paths = [str(p) for p in case.bigwigs]
    default = score(str(case.predictions), paths, device="cpu")
    given = score(str(case.predictions), paths, batch_size=1024, device="cpu")
    assert default.summary["settings"]["batch_size"] == 6 and given.summary["settings"]["batch_size"] == 1024
    for name, values in given.columns.items():
        np.testing.assert_array_equal(default.columns[name], values, err_msg=name)
    check_columns(default, case)


def test_summary_values_are_independent_reductions(tmp_path):
    case = make_case(tmp_path, n=60, peak=np.arange(60) % 4 != 0)
    weight = 0.7
    result = score(str(case.predictions), [str(p) for p in case.bigwigs], count_loss_weight=weight)
    summary = result.summary
    expected = expected_columns(case.logits, case.logcounts, case.observed, weight)
    assert summary["n_regions"] == 60 and summary["count_loss_weight"] == weight
    for column in ("profile_mnll", "count_log1p_mse", "mixture_loss"):
        stats = summary["metrics"][column]
        values = expected[column]
        assert stats["mean"] == pytest.approx(values.mean(), rel=RTOL64)
        assert stats["median"] == pytest.approx(np.median(values), rel=RTOL64)
        assert stats["q1"] == pytest.approx(np.percentile(values, 25), rel=RTOL64)
        assert stats["q3"] == pytest.approx(np.percentile(values, 75), rel=RTOL64)
        assert stats["n_undefined"] == 0
    # The seed's _mixture_loss returns the means of the per-region parts.
    assert summary["metrics"]["mixture_loss"]["mean"] == pytest.approx(
        expected["profile_mnll"].mean() + weight * expected["count_log1p_mse"].mean(), rel=RTOL64)
    target = np.log1p(case.observed.sum(axis=(1, 2)))
    predicted = case.logcounts[:, 0].astype(np.float64)
    assert summary["counts"]["pearson"] == pytest.approx(pearsonr(predicted, target)[0], rel=RTOL64)
    assert summary["counts"]["spearman"] == pytest.approx(spearmanr(predicted, target)[0], rel=RTOL64)
    assert summary["counts"]["mse"] == pytest.approx(np.mean((predicted - target) ** 2), rel=RTOL64)
    peaks = np.arange(60) % 4 != 0
    for group, rows in (("peaks", peaks), ("nonpeaks", ~peaks)):
        part = summary["groups"][group]
        assert part["n_regions"] == rows.sum()
        assert part["metrics"]["profile_mnll"]["mean"] == pytest.approx(expected["profile_mnll"][rows].mean(), rel=RTOL64)
        assert part["counts"]["spearman"] == pytest.approx(spearmanr(predicted[rows], target[rows])[0], rel=RTOL64)


def test_spearman_uses_averaged_ranks_for_ties(tmp_path):
    case = make_case(tmp_path, n=30)
    logcounts = np.round(case.logcounts, 0)  # many ties in the prediction
    result = score((case.logits, logcounts), case.observed)
    target = np.log1p(case.observed.sum(axis=(1, 2)))
    assert result.summary["counts"]["spearman"] == pytest.approx(spearmanr(logcounts[:, 0], target)[0], rel=RTOL64)


def test_mismatches_are_one_line_errors(tmp_path):
    case = make_case(tmp_path)
    with pytest.raises(UsageError, match="1 observed track"):
        score(str(case.predictions), [str(case.bigwigs[0])])
    bed = tmp_path / "wide.bed"
    bed.write_text("".join(f"{c}\t{s}\t{e + 10}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
    with pytest.raises(InputError, match="wide but the predictions have L = 50"):
        score(str(case.predictions), [str(p) for p in case.bigwigs], str(bed))
    other = write_predictions(tmp_path / "chr3.h5", case.logits, case.logcounts,
                              np.array(["chr3"] * len(case.chrom), dtype=object), case.start, case.end)
    with pytest.raises(InputError, match="chr3.*not in this bigWig"):
        score(str(other), [str(p) for p in case.bigwigs])
