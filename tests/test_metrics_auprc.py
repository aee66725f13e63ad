"""BPNet's binned auPRC against a plain-loop numpy re-statement of ``bpnet.metrics.eval_profile``."""

import functools

import os

import numpy as np
import pytest
import torch

from bpnet_eval.metrics import (auprc_region_mask, average_precision, bin_labels, bin_max,
                                peak_labels, pooled_auprc, profile_metrics)
from bpnet_eval.metrics.labels import binned_labels_scores_by_size
from tests.support.metric_cases import PRECISIONS, as_tensors, assert_close, softmax

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ---- reference, in BPNet's (N, L, S) layout with loops -------------------------------------

def ref_average_precision(y_true, y_score):
    """sklearn's definition with plain loops: sum over distinct thresholds of (R_n - R_{n-1}) P_n."""
    keep = (y_true != -1) & ~np.isnan(y_score)
    y_true, y_score = y_true[keep], y_score[keep]
    n_pos = np.sum(y_true == 1)
    if n_pos == 0:
        return np.nan
    ap, previous_recall = 0.0, 0.0
    for threshold in sorted(set(y_score.tolist()), reverse=True):
        called = y_score >= threshold
        tp = np.sum(called & (y_true == 1))
        fp = np.sum(called & (y_true == 0))
        recall = tp / n_pos
        ap += (recall - previous_recall) * (tp / (tp + fp))
        previous_recall = recall
    return ap


def ref_labels(yt):
    fracs = yt / yt.sum(axis=1, keepdims=True)
    is_peak = (fracs >= 0.015).astype(float)
    is_peak[(fracs < 0.015) & (fracs >= 0.005)] = -1
    return is_peak


def ref_bin(x, binsize, summary):
    out = np.zeros((x.shape[0], x.shape[1] // binsize, x.shape[2]))
    for i in range(out.shape[1]):
        out[:, i, :] = summary(x[:, binsize * i:binsize * (i + 1), :])
    return out


def ref_bin_amb(chunk):
    has_peak = np.any(chunk == 1, axis=1)
    return has_peak - (1 - has_peak) * np.any(chunk == -1, axis=1)


def ref_mask(yt):
    return yt.sum(axis=1).mean(axis=1) > 2.5 / 0.015


def ref_binned(yt, yp, binsize):
    """Binned labels and max-in-bin per-strand probabilities, shape (N, L // binsize, S)."""
    yp = yp / yp.sum(axis=1, keepdims=True)
    return ref_bin(ref_labels(yt), binsize, ref_bin_amb), ref_bin(yp, binsize, lambda c: c.max(axis=1))


def ref_pooled(yt, yp, binsize):
    labels, scores = ref_binned(yt[ref_mask(yt)], yp[ref_mask(yt)], binsize)
    return ref_average_precision(np.ravel(labels), np.ravel(scores))


def auprc_case(n_tracks, length=60, seed=0):
    """Counts (8, S, L) and logits: peaked profiles with ~300 reads per strand, one low-count region,
    one region with an empty strand, tied predictions."""
    rng = np.random.default_rng(seed)
    shape = (8, n_tracks, length)
    shape_probs = rng.gamma(0.3, size=shape)
    shape_probs /= shape_probs.sum(-1, keepdims=True)
    counts = np.stack([[rng.multinomial(300, p) for p in region] for region in shape_probs]).astype(np.float64)
    counts[6] = rng.poisson(0.5, size=shape[1:])
    if n_tracks > 1:
        counts[7, 0] = 0
        counts[7, 1] = rng.multinomial(500, shape_probs[7, 1])
    logits = np.log(shape_probs + 1e-3) + rng.normal(0, 1.0, size=shape) + 10
    logits[2] = np.round(logits[2])
    return logits, counts


# The pooled auPRC's three ways in: numpy arrays (``metrics.pooled``, as a run without torch), CPU tensors in float64
# (``compute.TensorPooledAuprc`` takes their numpy views) and tensors computed by torch (a GPU's code, here on the CPU).
POOL_PATHS = ("numpy", "tensors", "torch")


def new_pool(path, run_values=None, block_values=None):
    from bpnet_eval.compute import TensorPooledAuprc
    from bpnet_eval.metrics.pooled import PooledAuprc

    if path == "numpy":
        return PooledAuprc(run_values, block_values)
    pool = TensorPooledAuprc(run_values, block_values)
    pool.numpy_on_cpu = path == "tensors"
    return pool


def feed(pool, counts, logits, keep=None):
    """``pool.update`` with the arrays (as stored) as its path takes them, computed in float64."""
    from bpnet_eval.compute import TensorPooledAuprc

    if isinstance(pool, TensorPooledAuprc):
        pool.update(torch.as_tensor(counts), torch.as_tensor(logits), keep, dtype=torch.float64)
    else:
        pool.update(counts, logits, keep)


# ---- tests -----------------------------------------------------------------------------------

def test_average_precision_by_hand():
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, -1.0])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.95])
    assert float(average_precision(labels, scores)) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert torch.isnan(average_precision(torch.zeros(4), torch.rand(4)))


@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_average_precision_with_ties_ambiguous_and_nan(dtype, rtol, atol):
    rng = np.random.default_rng(5)
    labels = rng.choice([1.0, 0.0, 0.0, -1.0], size=(6, 200))
    scores = np.round(rng.random(size=(6, 200)) * 20) / 20  # many ties
    scores[0, :5] = np.nan
    labels[1] = np.where(labels[1] == 1, 0, labels[1])  # no positive
    got = average_precision(*as_tensors(dtype, labels, scores))
    expected = [ref_average_precision(l_, s_) for l_, s_ in zip(labels, scores)]
    assert np.isnan(expected[1])
    assert_close(got, expected, rtol, atol)
    assert_close(average_precision(*as_tensors(dtype, labels.ravel(), scores.ravel())),
                 ref_average_precision(labels.ravel(), scores.ravel()), rtol, atol)


@pytest.mark.parametrize("binsize", [1, 10, 7, 70])
@pytest.mark.parametrize("library", ["torch", "numpy"])
def test_labels_bins_and_mask_match_bpnet(binsize, library):
    """The labels, bins and mask of numpy arrays (a run's pooled auPRC) and torch tensors alike; a NaN score makes its
    bin's score NaN; 65 positions: a partial last bin dropped, none at all for bins of 70."""
    given = torch.as_tensor if library == "torch" else np.asarray

    def close(actual, expected, rtol, atol):
        assert_close(torch.as_tensor(actual), expected, rtol, atol)

    logits, counts = auprc_case(2, length=65)
    yt, yp = counts.transpose(0, 2, 1), softmax(logits).transpose(0, 2, 1)  # BPNet: (N, L, S)
    ref_l, ref_s = ref_binned(yt, yp, binsize)
    labels, scores = binned_labels_scores_by_size(given(counts), given(softmax(logits)), (binsize,))[binsize]
    assert type(labels) is type(given(counts))
    assert labels.dtype == (np.int8 if library == "numpy" else torch.float64)
    close(labels, ref_l.transpose(0, 2, 1), 0, 0)
    close(scores, ref_s.transpose(0, 2, 1), 1e-12, 1e-15)
    mask = auprc_region_mask(given(counts))
    np.testing.assert_array_equal(np.asarray(mask), ref_mask(yt))
    assert not mask[6] and mask[7]
    close(peak_labels(given(counts)), ref_labels(yt).transpose(0, 2, 1), 0, 0)
    close(bin_labels(given(ref_labels(yt).transpose(0, 2, 1)), binsize), ref_l.transpose(0, 2, 1), 0, 0)
    with_nan = yp.copy()
    with_nan[2, 13, 1] = np.nan
    close(bin_max(given(with_nan.transpose(0, 2, 1)), binsize),
                 ref_bin(with_nan, binsize, lambda c: c.max(axis=1)).transpose(0, 2, 1), 0, 0)


@pytest.mark.parametrize("n_tracks", [1, 2])
@pytest.mark.parametrize("binsize", [1, 10])
@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_pooled_auprc_matches_bpnet(n_tracks, binsize, dtype, rtol, atol):
    logits, counts = auprc_case(n_tracks)
    expected = ref_pooled(counts.transpose(0, 2, 1), softmax(logits).transpose(0, 2, 1), binsize)
    got = pooled_auprc(*as_tensors(dtype, counts, softmax(logits)), binsize=binsize)
    assert 0 < expected < 1
    assert_close(got, expected, rtol, atol)


@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_per_region_auprc_columns(dtype, rtol, atol):
    logits, counts = auprc_case(2)
    out = profile_metrics(*as_tensors(dtype, logits, counts), names=["profile_auprc_bin1", "profile_auprc_bin10"],
                          track_names=["plus", "minus"])
    assert list(out) == ["profile_auprc_bin1", "profile_auprc_bin1_plus", "profile_auprc_bin1_minus",
                         "profile_auprc_bin10", "profile_auprc_bin10_plus", "profile_auprc_bin10_minus"]
    yt, yp = counts.transpose(0, 2, 1), softmax(logits).transpose(0, 2, 1)
    mask = ref_mask(yt)
    for binsize in (1, 10):
        labels, scores = ref_binned(yt, yp, binsize)
        joint = [ref_average_precision(np.ravel(l_), np.ravel(s_)) if m else np.nan
                 for l_, s_, m in zip(labels, scores, mask)]
        assert_close(out[f"profile_auprc_bin{binsize}"], joint, rtol, atol)
        for s, track in enumerate(["plus", "minus"]):
            per_strand = [ref_average_precision(l_[:, s], s_[:, s]) if m else np.nan
                          for l_, s_, m in zip(labels, scores, mask)]
            assert_close(out[f"profile_auprc_bin{binsize}_{track}"], per_strand, rtol, atol)
    assert torch.isnan(out["profile_auprc_bin1"][6])  # below the read threshold
    assert torch.isnan(out["profile_auprc_bin1_plus"][7])  # empty strand: all negatives, no positive


@pytest.mark.parametrize("path", POOL_PATHS)
def test_pooled_auprc_is_undefined_when_no_region_passes_the_mask(path):
    """Sparse profiles (no region with enough counts for BPNet's mask): None, not a crash."""
    pooled = new_pool(path)
    observed = np.zeros((3, 2, 50))
    observed[:, 0, 7] = 1.0
    feed(pooled, observed, np.zeros((3, 2, 50)))
    assert pooled.result() == {"binsize=1": None, "binsize=10": None}



@pytest.mark.parametrize("length", [7, 9])
def test_windows_shorter_than_a_bin_have_no_binned_auprc(length):
    """BPNet's ``L // binsize`` bins: none of 10 bases in a window of ``length`` < 10, so the bin-10 auPRC is
    undefined per region (NaN) and pooled (None), not a crash; bin 1 is still scored (against sklearn's
    definition)."""
    import bpnet_eval

    rng = np.random.default_rng(length)
    counts = rng.poisson(60.0, size=(4, 2, length)).astype(np.float64)
    logits = rng.normal(size=counts.shape)
    result = bpnet_eval.score((logits, np.log1p(counts.sum(axis=(1, 2)))[:, None]), counts, metrics="all",
                              device="cpu", read_workers=0)
    for name in ("profile_auprc_bin10", "profile_auprc_bin10_plus", "profile_auprc_bin10_minus"):
        assert np.isnan(result.columns[name]).all(), name
    assert result.summary["profile_auprc"]["binsize=10"] is None
    yt, yp = counts.transpose(0, 2, 1), softmax(logits).transpose(0, 2, 1)
    labels, scores = ref_binned(yt, yp, 1)
    expected = [ref_average_precision(np.ravel(l_), np.ravel(s_)) if m else np.nan
                for l_, s_, m in zip(labels, scores, ref_mask(yt))]
    np.testing.assert_allclose(result.columns["profile_auprc_bin1"], expected, rtol=1e-12)
    assert average_precision(torch.zeros(3, 0), torch.zeros(3, 0, dtype=torch.float64)).shape == (3,)

# ---- the pooled auPRC in bounded memory: sorted runs spilled and merged -------------------------

@pytest.mark.parametrize("run_values,block_values", [(10 ** 6, 10 ** 6), (50, 7), (1, 1), (333, 1000)])
def test_sorted_runs_merge_every_key_in_order(tmp_path, run_values, block_values):
    from bpnet_eval.spill import SortedRuns

    rng = np.random.default_rng(run_values)
    parts = [rng.integers(0, 40, size=rng.integers(0, 90)).astype(np.uint32) for _ in range(12)]
    parts.append(np.full(200, 17, dtype=np.uint32))  # one value across many runs and blocks
    parts.append(rng.integers(0, 2 ** 32, size=500, dtype=np.uint64).astype(np.uint32))
    runs = SortedRuns(run_values, block_values, directory=str(tmp_path))
    for part in parts:
        runs.add(part)
    blocks = list(runs.merged())
    assert all(np.all(np.diff(b.astype(np.int64)) >= 0) for b in blocks)
    assert all(a[-1] <= b[0] for a, b in zip(blocks, blocks[1:]))
    np.testing.assert_array_equal(np.concatenate(blocks), np.sort(np.concatenate(parts)))
    assert runs.spilled == (runs.n >= run_values)
    assert not any(tmp_path.iterdir())  # the temporary file has no name: nothing is left behind
    runs.close()
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("run_values", [10 ** 6, 64, 7])
def test_sorted_runs_left_unsorted_below_the_floor_give_every_key_at_or_above_the_bound(tmp_path, run_values):
    """A floor lowered while keys come (never raised): each run spilled leaves its keys below the floor of that time
    unsorted; ``settle(lowest)`` (lowest at or below every floor, as the pooled auPRC's lowest positive is) counts
    and ``merged`` gives exactly the keys ``>= lowest``, ascending, from the sorted parts, the unsorted parts and
    the keys in memory alike; ``settle(0)`` and ``merged`` alone every key."""
    from bpnet_eval.spill import SortedRuns

    rng = np.random.default_rng(run_values)
    parts = [rng.integers(0, 2 ** 32, size=rng.integers(0, 60), dtype=np.uint64).astype(np.uint32) for _ in range(40)]
    parts[7] = np.full(30, 1000, np.uint32)  # one key at a floor, across runs
    floors = np.sort(rng.integers(0, 2 ** 32, size=len(parts)))[::-1]
    floors[:5] = 1 << 32  # no bound yet: whole runs unsorted
    floors[20:24] = 1000
    everything = np.sort(np.concatenate(parts))
    for lowest in (0, 1000, int(floors[-1]), int(floors[-1]) - 1):
        for explicit in (True, False):
            if not explicit and lowest:
                continue
            runs = SortedRuns(run_values, 5, directory=str(tmp_path))
            for part, floor in zip(parts, floors):
                runs.floor = min(runs.floor, int(floor)) if runs.floor else int(floor)
                runs.add(part)
            if lowest <= min(int(floors[-1]), 1000) or lowest == 0:
                kept = everything[everything >= lowest]
                if explicit:
                    assert runs.settle(lowest) == kept.size
                blocks = list(runs.merged())
                assert all(a[-1] <= b[0] for a, b in zip(blocks, blocks[1:]) if a.size and b.size)
                np.testing.assert_array_equal(np.concatenate(blocks) if blocks else np.zeros(0, np.uint32), kept)
            assert runs.spilled == (runs.n >= run_values)
            runs.close()
    assert not any(tmp_path.iterdir())


def test_average_precision_of_keys_is_the_same_whatever_the_blocks_and_without_keys_below_the_lowest_positive():
    """The same float (the terms summed exactly) from any blocking of the keys, and from the keys scoring at least
    the lowest positive alone (counting only those); and sklearn's AP of the entries (float64 loops) to 1e-12."""
    from bpnet_eval.metrics.auprc import average_precision_of_keys, score_label_keys

    rng = np.random.default_rng(2)  # (a case where per-block float sums of the terms come out differently)
    scores = rng.random(20000) ** 6
    scores[::5] = np.round(scores[::5], 4)  # ties
    labels = ((rng.random(20000) < 0.3) & (scores > 1e-4)).astype(np.float64)
    keys = np.sort(score_label_keys(torch.as_tensor(labels), torch.as_tensor(scores)))
    n_positive = int(np.count_nonzero(keys & 1))
    lowest = int(keys[(keys & 1).astype(bool)].min()) & ~1
    kept = keys[keys >= lowest]
    assert 0 < kept.size < keys.size
    expected = ref_average_precision(labels, scores.astype(np.float32).astype(np.float64))
    values = set()
    for stream in (keys, kept):
        for cuts in ([], [1], [17, 18, 400], list(range(0, stream.size, 7)), list(range(0, stream.size, 997)),
                     sorted(rng.integers(0, stream.size, 50))):
            blocks = np.split(stream, cuts)
            values.add(average_precision_of_keys(iter(blocks), n_positive, stream.size))
    assert len(values) == 1
    assert values.pop() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("path", POOL_PATHS)
def test_pooled_auprc_with_positives_found_late_and_lower_equals_bpnet_pooled(path):
    """Batches without any positive bin first (their keys spilled unsorted), then positives scoring ever lower (the
    floor lowered after runs were spilled): the pooled auPRC is still the reference's."""
    counts, logits = spill_case(seed=3, n=40)
    flat = np.zeros_like(counts)
    flat[:] = 2.0  # deep enough for the mask, no bin above 1.5% of a region: no positive
    order = np.argsort(counts[:, :, 90:110].sum(axis=(1, 2)))[::-1]
    stream_counts = np.concatenate([flat[:8], counts[order]])
    stream_logits = np.concatenate([logits[:8], logits[order]])
    for run_values in (1 << 24, 300, 41):
        pooled = new_pool(path, run_values, 37)
        for i in range(0, len(stream_counts), 4):
            feed(pooled, stream_counts[i:i + 4], stream_logits[i:i + 4])
        got = pooled.result()
        yt, yp = stream_counts.transpose(0, 2, 1), softmax(stream_logits).transpose(0, 2, 1)
        for binsize in (1, 10):
            labels, scores = ref_binned(yt[ref_mask(yt)], yp[ref_mask(yt)], binsize)
            expected = ref_average_precision(np.ravel(labels), np.ravel(scores).astype(np.float32).astype(np.float64))
            np.testing.assert_allclose(got[f"binsize={binsize}"], expected, rtol=1e-12)


def test_score_label_keys_are_float32_bits_and_label_of_the_kept_entries():
    """One key per entry with a label >= 0 and a score: ``bits(float32(score)) << 1 | [label = 1]`` (``-0.0`` as
    ``0.0``), in entry order; a negative score is refused. The reference packs each key with ``struct``."""
    import struct

    from bpnet_eval.metrics.auprc import score_label_keys

    rng = np.random.default_rng(11)
    scores = rng.random(500) ** 6
    scores[::17], scores[3::19], scores[5::23] = np.nan, -0.0, 1e-320  # left out, zero, a float32 zero
    scores[7::29] = 2.5e-39  # a float32 subnormal
    labels = rng.integers(-1, 2, 500).astype(np.float64)
    for dtype in (torch.float64, torch.float32):
        got = score_label_keys(torch.as_tensor(labels, dtype=dtype), torch.as_tensor(scores, dtype=dtype))
        want = [(struct.unpack("<I", struct.pack("<f", float(np.float32(s) + np.float32(0))))[0] << 1) | int(l == 1)
                for l, s in zip(labels, torch.as_tensor(scores, dtype=dtype).double().numpy())
                if l >= 0 and not np.isnan(s)]
        assert got.dtype == np.uint32
        np.testing.assert_array_equal(got, np.array(want, dtype=np.uint32))
    with pytest.raises(ValueError, match=">= 0"):
        score_label_keys(torch.tensor([1.0, 0.0]), torch.tensor([0.5, -1e-3]))
    assert score_label_keys(torch.tensor([-1.0, 1.0]), torch.tensor([-1.0, float("nan")])).size == 0  # both left out


def test_sorted_runs_are_written_beside_the_caller_and_a_failed_write_is_raised(tmp_path, monkeypatch):
    """Each run is sorted and written by a thread of its own while the next keys are added (two buffers, one run
    being written at a time); a write that fails (a full disk) is raised by the next spill or by ``merged``, and
    ``close`` still frees everything."""
    import errno
    import threading

    from bpnet_eval import spill

    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2 ** 32, size=1000, dtype=np.uint64).astype(np.uint32)
    started = []
    real_write = spill._sort_and_write

    def write(*args):
        started.append(threading.current_thread() is not threading.main_thread())
        real_write(*args)

    monkeypatch.setattr(spill, "_sort_and_write", write)
    runs = spill.SortedRuns(100, 64, directory=str(tmp_path))
    for part in np.array_split(keys, 7):
        runs.add(part)
    assert len(started) == 10 and all(started)  # 10 runs, each written by a thread that is not the caller's
    np.testing.assert_array_equal(np.concatenate(list(runs.merged())), np.sort(keys))
    assert threading.active_count() == 1  # every writer joined: forking is safe again
    runs.close()

    def full_disk(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spill, "_sort_and_write", real_write)
    monkeypatch.setattr(spill.os, "pwrite", full_disk)
    for spills_before in (1, 2):  # raised by the next spill, or by merged() when no spill follows
        runs = spill.SortedRuns(100, 64, directory=str(tmp_path))
        with pytest.raises(OSError, match="No space left"):
            for part in np.array_split(keys[:100 * spills_before + 50], 3):
                runs.add(part)
            list(runs.merged())
        runs.close()  # waits for nothing more, raises nothing
        assert threading.active_count() == 1 and not any(tmp_path.iterdir())


def test_merged_ahead_gives_merged_blocks_raises_their_error_and_stops_when_left(tmp_path, monkeypatch):
    """``merged_ahead``: the blocks of ``merged`` (the same arrays, in order) from a thread of its own; an error of the
    merge is raised to the caller; a caller leaving after one block stops the thread (no thread left behind)."""
    import threading

    from bpnet_eval import spill

    rng = np.random.default_rng(6)
    keys = rng.integers(0, 2 ** 32, size=5000, dtype=np.uint64).astype(np.uint32)
    merging = lambda: [thread for thread in threading.enumerate() if thread.name == "bpnet-eval-merge"]

    def filled():
        runs = spill.SortedRuns(700, 300, directory=str(tmp_path))
        for part in np.array_split(keys, 9):
            runs.add(part)
        return runs

    runs = filled()
    expected = [block.copy() for block in runs.merged()]
    runs.close()
    runs = filled()
    got = list(spill.merged_ahead(runs, depth=2))
    assert len(got) == len(expected) > 5 and all(np.array_equal(a, b) for a, b in zip(got, expected))
    runs.close()
    runs = filled()
    ahead = spill.merged_ahead(runs, depth=1)
    assert np.array_equal(next(ahead), expected[0])
    ahead.close()  # left after one block
    assert not merging()
    runs.close()

    def broken(self):
        yield np.zeros(3, np.uint32)
        raise OSError("the temporary file of the pooled auPRC was cut short")

    monkeypatch.setattr(spill.SortedRuns, "merged", broken)
    runs = filled()
    with pytest.raises(OSError, match="cut short"):
        list(spill.merged_ahead(runs))
    assert not merging()
    runs.close()


def spill_case(seed=0, n=30, length=120):
    """Counts deep enough for BPNet's mask in most regions, tied and zero predictions, an empty strand."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.4, 3.0, size=(n, 2, length))).astype(np.float64)
    counts[:, :, 90:110] += rng.poisson(30, size=(n, 2, 20))
    counts[3] = 0
    counts[5, 1] = 0
    logits = np.round(rng.normal(size=counts.shape) + np.log(counts + 1), 1)  # ties within and across regions
    logits[7] = 0.0  # uniform: one score shared by a whole region
    logits[8, :, :50] = -800.0  # probabilities that underflow to 0
    return counts, logits


@pytest.mark.parametrize("run_values,block_values", [(1 << 24, 1 << 16), (997, 101), (64, 3)])
@pytest.mark.parametrize("batch", [7, 60])
@pytest.mark.parametrize("path", POOL_PATHS)
def test_pooled_auprc_spilled_equals_bpnet_pooled(run_values, block_values, batch, path):
    counts, logits = spill_case()
    pooled = new_pool(path, run_values, block_values)
    for i in range(0, len(counts), batch):
        feed(pooled, counts[i:i + batch], logits[i:i + batch])
    got = pooled.result()
    for binsize in (1, 10):
        expected = ref_pooled_float32(binsize)
        assert 0 < expected < 1
        np.testing.assert_allclose(got[f"binsize={binsize}"], expected, rtol=1e-9)


@functools.lru_cache(maxsize=None)
def ref_pooled_float32(binsize):
    """``ref_pooled`` of ``spill_case`` with the binned scores rounded to float32, as the pool keeps them."""
    counts, logits = spill_case()
    yt, yp = counts.transpose(0, 2, 1), softmax(logits).transpose(0, 2, 1)
    labels, scores = ref_binned(yt[ref_mask(yt)], yp[ref_mask(yt)], binsize)
    return ref_average_precision(np.ravel(labels), np.ravel(scores).astype(np.float32).astype(np.float64))


def recorded_keys(path, counts, logits, keep=None):
    """Every key ``path``'s pool is given, per bin size, in order."""
    pool, given = new_pool(path), []
    add = pool.add
    pool.add = lambda keys: (given.append({b: k.copy() for b, k in keys.items()}), add(keys))
    feed(pool, counts, logits, keep)
    pool.result()
    return {b: np.concatenate([g[b] for g in given] + [np.zeros(0, np.uint32)]) for b in (1, 10)}


def hostile_pooled_cases():
    """Ties, zeros, underflow and empty strands (``spill_case``), as stored in float32, with large logits, -inf, NaN
    and +inf logits, and normalised (non-integer) counts."""
    counts, logits = spill_case(seed=5, n=70, length=200)
    yield "float64", counts, logits
    yield "float32", counts.astype(np.float32), logits.astype(np.float32)
    extreme = logits.copy()
    extreme[10] += 1e6  # far from 0: every digit kept by subtracting the largest
    extreme[11, 0, :20] = -np.inf
    extreme[12, 1, 5] = np.nan
    extreme[13, 0, 7] = np.inf
    extreme[14, 1] = -np.inf
    yield "extreme", counts, extreme
    yield "normalised", (counts * 0.37 + 0.01).astype(np.float32), logits


HOSTILE_POOLED = list(hostile_pooled_cases())


@pytest.mark.parametrize("name,counts,logits", HOSTILE_POOLED, ids=[case[0] for case in HOSTILE_POOLED])
def test_pooled_auprc_keys_from_numpy_are_torchs_bit_for_bit(name, counts, logits):
    """The keys a run without torch makes (numpy's float64 softmax and sums) are those torch makes from the same rows,
    so ``--preset bpnet`` (numpy) and the GPU or float32 paths (torch) pool the same bins: equal keys here, on every
    hostile case, also where rows are left out."""
    keep = np.ones(len(counts), bool)
    keep[[0, 20, 21, 40]] = False
    for rows in (None, keep):
        by_torch = recorded_keys("torch", counts, logits, rows)
        assert by_torch[1].size > 1000 and by_torch[10].size > 100
        for path in ("numpy", "tensors"):
            got = recorded_keys(path, counts, logits, rows)
            for binsize in (1, 10):
                np.testing.assert_array_equal(got[binsize], by_torch[binsize], err_msg=f"{path} bin {binsize}")


def test_pooled_auprc_takes_the_region_mask_from_exact_totals():
    """Given each track's totals (a run's read counts, summed where they were read), the pool masks regions by them
    and reads no count of a region they leave out: the same keys as from the counts, and a region the totals
    leave out adds none."""
    from bpnet_eval.metrics.pooled import PooledAuprc

    counts, logits = spill_case(seed=4)
    totals = counts.sum(axis=-1)
    from_counts, from_totals = PooledAuprc(), PooledAuprc()
    from_counts.update(counts, logits)
    from_totals.update(counts, logits, totals=totals)
    assert from_counts._positives == from_totals._positives
    assert from_totals.result() == from_counts.result()
    passing = np.flatnonzero(totals.mean(axis=-1) > 2.5 / 0.015)
    assert len(passing) > 2
    fewer_totals = totals.copy()
    fewer_totals[passing[:2]] = 0
    fewer, subset = PooledAuprc(), PooledAuprc()
    fewer.update(counts, logits, totals=fewer_totals)
    rest = np.setdiff1d(np.arange(len(counts)), passing[:2])
    subset.update(counts[rest], logits[rest])
    assert fewer.result() == subset.result()


@pytest.mark.parametrize("path", POOL_PATHS)
def test_pooled_auprc_keeps_only_the_rows_scored(path):
    counts, logits = spill_case(seed=2)
    keep = np.ones(len(counts), dtype=bool)
    keep[10:30] = False
    pooled = new_pool(path, 500, 50)
    feed(pooled, counts, logits, keep)
    subset = new_pool(path)
    feed(subset, counts[keep], logits[keep])
    assert pooled.result() == pytest.approx(subset.result(), rel=1e-12)
