"""Inputs as peers write them: negative minus strands, gzipped and interleaved loci files, window centres,
chromosome filters, bpnet-lite's index mask, .npz files in another order, basepairmodels' wider stored
windows and negative counts-scale profiles, stitched predicted bigWigs.

Every expected window and value is computed here with numpy from the same inputs (tangermeme's
interleaving written out as its rule: row k of file i at k * n_files + i)."""

import gzip
from pathlib import Path

import h5py
import numpy as np
import pyBigWig
import pytest
from scipy.special import log_softmax

from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.pipeline import score
from bpnet_eval.regions import Regions, read_region_file, read_regions
from bpnet_eval.sources.bigwig import BigWigReader
from bpnet_eval.sources.npz import NpzPredictions
from bpnet_eval.sources.predicted_bigwig import overlapping_windows
from bpnet_eval.sources.predictions import profile_to_logits
from tests.support.cases import make_case, write_bigwig, write_predictions
from tests.support.reference import expected_columns

NARROWPEAK = "{c}\t{s}\t{e}\tpeak{k}\t0\t.\t5.0\t3.0\t2.0\t{summit}\n"


def narrowpeak_rows(rows):
    return "".join(NARROWPEAK.format(c=c, s=s, e=e, k=k, summit=summit) for k, (c, s, e, summit) in enumerate(rows))


# ------------------------------------------------------------------------------------------- region files
def test_gzipped_narrowpeak_is_read_directly(tmp_path):
    rows = [("chr1", 100, 300, 50), ("chr2", 1000, 1400, 399)]
    plain = tmp_path / "peaks.narrowPeak"
    plain.write_text(narrowpeak_rows(rows))
    packed = tmp_path / "peaks.narrowPeak.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    named_oddly = tmp_path / "peaks.txt"  # recognised by its bytes, not its name
    named_oddly.write_bytes(packed.read_bytes())
    for path in (packed, named_oddly):
        table = read_region_file(path, 20)
        np.testing.assert_array_equal(table.start, [100 + 50 - 10, 1000 + 399 - 10])
        np.testing.assert_array_equal(table.end - table.start, [20, 20])
    broken = tmp_path / "broken.bed.gz"
    broken.write_bytes(packed.read_bytes()[:-9])
    with pytest.raises(InputError, match="broken.bed.gz: cannot read the region file"):
        read_region_file(broken, 20)


def test_midpoint_windows_as_tangermeme_centres_them(tmp_path):
    rows = [("chr1", 100, 301, 7), ("chr1", 500, 500, 0), ("chr2", 10, 21, 3)]
    path = tmp_path / "peaks.narrowPeak"
    path.write_text(narrowpeak_rows(rows))
    for length in (10, 11):
        table = read_region_file(path, length, window_center="midpoint")
        mid = np.array([s + (e - s) // 2 for _, s, e, _ in rows])
        # tangermeme: start = mid - L//2, end = mid + L//2 + L % 2
        np.testing.assert_array_equal(table.start, mid - length // 2)
        np.testing.assert_array_equal(table.end, mid + length // 2 + length % 2)
    bed = tmp_path / "windows.bed"
    bed.write_text("chr1\t0\t10\nchr1\t40\t50\n")
    same = read_region_file(bed, 10, window_center="midpoint")  # a BED window of width L is itself
    np.testing.assert_array_equal(same.start, [0, 40])
    with pytest.raises(UsageError, match="--window-center summit needs narrowPeak rows"):
        read_region_file(bed, 10, window_center="summit")
    with pytest.raises(UsageError, match="--length L"):
        read_region_file(path, 0)


def test_several_loci_files_interleave_after_the_chromosome_filter(tmp_path):
    peaks = [("chr1", 0, 10), ("chr2", 10, 20), ("chr1", 20, 30), ("chr1", 30, 40), ("chr1", 40, 50)]
    negatives = [("chr1", 100, 110), ("chr3", 110, 120), ("chr1", 120, 130)]
    for name, rows in (("peaks.bed", peaks), ("neg.bed", negatives)):
        (tmp_path / name).write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    table = read_regions(f"{tmp_path / 'peaks.bed'},{tmp_path / 'neg.bed'}", 10, chroms=("chr1",))
    kept_peaks = [r for r in peaks if r[0] == "chr1"]
    kept_negatives = [r for r in negatives if r[0] == "chr1"]
    keyed = sorted([(k * 2 + 0, r) for k, r in enumerate(kept_peaks)] + [(k * 2 + 1, r) for k, r in enumerate(kept_negatives)])
    np.testing.assert_array_equal(table.start, [r[1] for _, r in keyed])
    assert list(table.start) == [0, 100, 20, 120, 30, 40]
    mask = np.array([True, False, True, True, False, True])
    masked = read_regions([tmp_path / "peaks.bed", tmp_path / "neg.bed"], 10, chroms=["chr1"], kept=mask,
                          mask_path="idx.npz")
    assert list(masked.start) == [0, 20, 120, 40] and "4 of 6 loci kept" in masked.source
    with pytest.raises(InputError, match="idx.npz: the index mask has 6 entries but the region file.* 5 loci"):
        read_regions(str(tmp_path / "peaks.bed"), 10, kept=mask, mask_path="idx.npz")


def test_overlapping_windows_are_counted_per_chromosome():
    regions = Regions(np.array(["chr1", "chr1", "chr2", "chr1", "chr2"], dtype=object),
                      [0, 50, 95, 95, 200], [100, 150, 195, 195, 300])
    # chr1: 0-100, 50-150 (overlaps), 95-195 (overlaps); chr2: 95-195, 200-300 (no overlap)
    assert overlapping_windows(regions) == 2
    assert overlapping_windows(regions.subset([0, 2, 4])) == 0


# --------------------------------------------------------------------------------- negative minus strands
def test_bigwig_summary_tells_negative_files(tmp_path):
    sizes = {"chr1": 1000}
    values = np.zeros(1000)
    values[[3, 50, 51]] = [-2.0, -1.0, -7.0]
    negative = write_bigwig(tmp_path / "neg.bw", sizes, {"chr1": values})
    mixed = write_bigwig(tmp_path / "mixed.bw", sizes, {"chr1": np.where(values < -5, 4.0, values)})
    low, high = BigWigReader(negative).value_range()
    assert low == -7.0 and high < 1e-300  # pyBigWig writes DBL_MIN as the maximum of an all-negative file
    assert BigWigReader(negative).stored_as_negative()
    assert not BigWigReader(mixed).stored_as_negative()


def test_negative_observed_minus_strand_is_read_as_counts_and_mixed_signs_stay_an_error(tmp_path):
    case = make_case(tmp_path, n=12, length=30, seed=4)
    minus = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
    for i in range(len(case.chrom)):
        minus[case.chrom[i]][case.start[i]:case.end[i]] = -case.observed[i, 1]
    negative = write_bigwig(tmp_path / "minus.negative.bw", case.chrom_sizes, minus)
    regions = Regions(case.chrom, case.start, case.end)
    result = score(str(case.predictions), [str(case.bigwigs[0]), str(negative)], device="cpu")
    expected = expected_columns(case.logits, case.logcounts, case.observed)
    np.testing.assert_allclose(result.columns["profile_mnll"], expected["profile_mnll"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.columns["observed_counts"], expected["observed_counts"], rtol=0, atol=0)
    assert not np.signbit(result.columns["observed_counts"]).any()  # no -0.0
    notes = [w for w in result.summary["warnings"] if "read as magnitudes" in w]
    assert len(notes) == 1 and str(negative) in notes[0]
    assert result.summary["inputs"]["truth"]["read_as_magnitudes"] == [str(negative)]
    row = int(np.flatnonzero(case.observed[:, 1].sum(1) > 0)[0])
    minus[case.chrom[row]][case.start[row]] = 3.0  # one positive value: the file mixes signs
    mixed = write_bigwig(tmp_path / "minus.mixed.bw", case.chrom_sizes, minus)
    with pytest.raises(InputError, match=r"minus.mixed.bw: observed value -\d+ in chr\d:\d+-\d+ \(region \d+\) is "
                                         r"negative.*mixes signs") as err:
        score(str(case.predictions), [str(case.bigwigs[0]), str(mixed)], regions, device="cpu")
    assert "logits" not in str(err.value)


# -------------------------------------------------------------------------------------------- .npz files
def test_npz_files_in_another_order_are_recognised_and_noted(tmp_path):
    rng = np.random.default_rng(2)
    profile, counts = rng.normal(size=(6, 2, 8)).astype(np.float32), rng.normal(size=(6, 1)).astype(np.float32)
    mask = np.array([True, False, True, True, True, False, True, True])
    for name, array in (("p.npz", profile), ("c.npz", counts), ("m.npz", mask)):
        np.savez_compressed(tmp_path / name, array)
    paths = [str(tmp_path / n) for n in ("c.npz", "m.npz", "p.npz")]
    preds = NpzPredictions(paths)
    logits, logcounts = preds.read(0, 6)
    np.testing.assert_array_equal(logits, profile)
    np.testing.assert_array_equal(logcounts, counts)
    np.testing.assert_array_equal(preds.kept_mask, mask)
    note = preds.describe()["notes"][0]
    assert "swapped" in note and f"profile logits = {tmp_path / 'p.npz'}" in note
    assert not NpzPredictions([paths[2], paths[0]]).describe()["notes"]
    np.savez_compressed(tmp_path / "short.npz", mask[:7])
    with pytest.raises(InputError, match="short.npz: the index mask keeps 5 loci but .* holds 6 predictions"):
        NpzPredictions([paths[2], paths[0], str(tmp_path / "short.npz")])


# ---------------------------------------------------------------------------- counts-scale profiles below 0
def test_counts_profiles_all_below_zero_keep_their_distribution():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 2, 9))
    probs = np.exp(log_softmax(logits, axis=-1))
    scale = np.array([[2.0, np.expm1(-0.3)], [np.expm1(-2.0), 5.0], [1.0, 1.0]])  # e^c - 1 < 0 for two tracks
    stored = probs * scale[:, :, None]
    got = profile_to_logits(stored, "counts")
    np.testing.assert_allclose(log_softmax(got, axis=-1), log_softmax(logits, axis=-1), rtol=1e-12, atol=1e-12)
    mixed = stored.copy()
    mixed[0, 0, 0] = -1.0
    assert np.isnan(profile_to_logits(mixed, "counts")[0, 0, 0])


@pytest.mark.parametrize("kind", ["counts", "probabilities"])
@pytest.mark.parametrize("dtype", ["<f8", "<f4", ">f8", "<i4"])
def test_profiles_taken_in_place_give_the_same_logits_and_others_are_left_as_they_were(kind, dtype):
    """``owned``: the logarithms are taken in the array given (a float array in this machine's byte order), the same
    values and dtype as a new array; without it the array given is left as it was. Tracks all below 0, tracks mixing
    signs, zeros, NaN and infinities."""
    rng = np.random.default_rng(5)
    stored = rng.gamma(0.5, 2.0, size=(6, 2, 11)) * (rng.random((6, 2, 11)) < 0.7)
    stored[1, 0] *= -1  # all <= 0 with some < 0: read as |v| (counts)
    stored[2, 1, 3] = -1.0  # mixing signs: NaN
    stored[3, 0] = 0.0
    stored[4, 1, 2], stored[5, 0, 0] = np.nan, np.inf
    stored = stored.astype(dtype) if dtype != "<i4" else np.abs(np.nan_to_num(stored, posinf=9)).round().astype(dtype)
    kept = stored.copy()
    expected = profile_to_logits(stored, kind)
    np.testing.assert_array_equal(stored, kept)  # left as it was
    with np.errstate(divide="ignore", invalid="ignore"):
        flipped = (kept <= 0).all(axis=-1, keepdims=True) & (kept < 0).any(axis=-1, keepdims=True)
        by_hand = np.maximum(np.log(np.where(flipped, -kept, kept) if kind == "counts" else kept),
                             np.log(np.finfo(np.float32).tiny))
    np.testing.assert_array_equal(expected, by_hand)
    assert expected.dtype == by_hand.dtype
    owned = stored.copy()
    got = profile_to_logits(owned, kind, owned=True)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype and got.dtype.isnative == expected.dtype.isnative
    takes_logs = owned.dtype.kind == "f" and owned.dtype.isnative  # (a flipped track makes a new array first)
    assert (got is owned) == (takes_logs and not (kind == "counts" and flipped.any()))


def test_basepairmodels_windows_wider_than_l_are_centre_cropped(tmp_path):
    n, wide, length = 4, 20, 14
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "p.h5", "w") as h5:
        h5.create_dataset("coords/coords_chrom", data=np.array(["chr1"] * n, dtype=object),
                          dtype=h5py.string_dtype())
        h5.create_dataset("coords/coords_start", data=np.arange(n) * 100)
        h5.create_dataset("coords/coords_end", data=np.arange(n) * 100 + wide)
        h5.create_dataset("predictions/pred_profs", data=rng.gamma(1.0, size=(n, length, 2)))
        h5.create_dataset("predictions/pred_logcounts", data=rng.normal(size=(n, 2)))
    from bpnet_eval.sources.predictions import HDF5Predictions

    preds = HDF5Predictions(str(tmp_path / "p.h5"))
    table = preds.regions()
    np.testing.assert_array_equal(table.start, np.arange(n) * 100 + wide // 2 - length // 2)
    np.testing.assert_array_equal(table.end - table.start, [length] * n)
    assert "middle 14 bp" in preds.describe()["notes"][0]


PROSEQ = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "brgenomics_dm6_PROseq"


@pytest.mark.skipif(not PROSEQ.is_dir(), reason=f"the real PRO-seq bigWigs are not here: {PROSEQ} is absent")
def test_real_proseq_minus_strand_stored_negative_scores_as_its_counts(tmp_path):
    """The real dm6 PRO-seq tracks (BRGenomics), the minus strand written negated as PRO-seq pipelines store it:
    the default run scores it as the positive counts, against pyBigWig's reading of the original files."""
    plus, minus = PROSEQ / "PROseq_dm6_chr4_plus.bw", PROSEQ / "PROseq_dm6_chr4_minus.bw"
    negative = tmp_path / "PROseq_dm6_chr4_minus.negative.bw"
    with pyBigWig.open(str(minus)) as source, pyBigWig.open(str(negative), "w") as out:
        out.addHeader(list(source.chroms().items()))
        intervals = source.intervals("chr4")
        out.addEntries(["chr4"] * len(intervals), [s for s, _, _ in intervals], ends=[e for _, e, _ in intervals],
                       values=[-v for _, _, v in intervals])
    length = 100
    with pyBigWig.open(str(plus)) as p, pyBigWig.open(str(minus)) as m:
        covered = sorted({s for s, _, _ in p.intervals("chr4")} | {s for s, _, _ in m.intervals("chr4")})
        start = np.unique([max(0, s - length // 3) for s in covered])
        observed = np.stack([[np.nan_to_num(bw.values("chr4", int(s), int(s) + length, numpy=True)) for bw in (p, m)]
                             for s in start]).astype(np.float64)
    assert observed[:, 1].sum() > 0 and observed[:, 0].sum() > 0
    rng = np.random.default_rng(7)
    logits = rng.normal(size=observed.shape).astype(np.float32)
    logcounts = rng.normal(1.0, 1.0, size=(len(start), 1)).astype(np.float32)
    chrom = np.array(["chr4"] * len(start), dtype=object)
    predictions = write_predictions(tmp_path / "preds.h5", logits, logcounts, chrom, start, start + length)
    result = score(str(predictions), [str(plus), str(negative)], device="cpu")
    expected = expected_columns(logits, logcounts, observed)
    for name in ("observed_counts", "profile_mnll", "count_log1p_mse", "mixture_loss"):
        np.testing.assert_allclose(result.columns[name], expected[name], rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(result.columns["profile_mnll_minus"], expected["per_track"][:, 1], rtol=1e-9, atol=1e-9)
    assert any(str(negative) in w and "read as magnitudes" in w for w in result.summary["warnings"])
