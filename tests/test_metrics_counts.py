"""Count metrics and ranks against independent float64 numpy/scipy references."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, rankdata, spearmanr

from bpnet_eval.metrics import (COUNT_METRICS_ALL, average_ranks, count_mae, count_metrics, count_mse,
                                count_pearson, count_spearman, count_variance_explained, ordinal_ranks)
from tests.support.metric_cases import PRECISIONS, as_tensors, assert_close

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def count_case(n=300, seed=0):
    """Predicted log counts and observed totals over ``n`` regions: tied totals, zeros, large totals."""
    rng = np.random.default_rng(seed)
    totals = rng.poisson(rng.gamma(1.0, 40, size=n)).astype(np.float64)
    totals[:20] = 0
    totals[20:40] = 7
    totals[-5:] = 2e6
    predicted = np.log1p(totals) + rng.normal(0, 0.7, size=n) + 0.3
    predicted[50:60] = 2.0  # tied predictions
    return predicted, totals


def ref_variance_explained(y, yhat):
    """BPNet's ``var_explained``."""
    return 1 - np.var(y - yhat) / np.var(y)


@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_count_metrics_match_numpy_and_scipy(dtype, rtol, atol):
    predicted, totals = count_case()
    y = np.log(1 + totals)
    c_t, n_t = as_tensors(dtype, predicted, totals)
    assert_close(count_pearson(c_t, n_t), pearsonr(predicted, y)[0], rtol, atol)
    assert_close(count_spearman(c_t, n_t), spearmanr(predicted, y)[0], rtol, atol)
    assert_close(count_mse(c_t, n_t), np.mean((y - predicted) ** 2), rtol, atol)
    assert_close(count_mae(c_t, n_t), np.mean(np.abs(y - predicted)), rtol, atol)
    assert_close(count_variance_explained(c_t, n_t), ref_variance_explained(y, predicted), rtol, atol)
    ordinal = pearsonr(rankdata(predicted, method="ordinal"), rankdata(y, method="ordinal"))[0]
    assert_close(count_spearman(c_t, n_t, ties="ordinal"), ordinal, rtol, atol)


def test_count_metrics_reduce_the_last_axis_per_track():
    predicted = np.stack([count_case(seed=s)[0] for s in range(3)])
    totals = np.stack([count_case(seed=s)[1] for s in range(3)])
    y = np.log1p(totals)
    c_t, n_t = as_tensors(torch.float64, predicted, totals)
    assert_close(count_pearson(c_t, n_t), [pearsonr(a, b)[0] for a, b in zip(predicted, y)], 1e-6, 1e-9)
    assert_close(count_spearman(c_t, n_t), [spearmanr(a, b)[0] for a, b in zip(predicted, y)], 1e-6, 1e-9)
    assert_close(count_variance_explained(c_t, n_t),
                 [ref_variance_explained(b, a) for a, b in zip(predicted, y)], 1e-6, 1e-9)


def test_constant_inputs_are_undefined_unless_asked_for_zero():
    c_t, n_t = as_tensors(torch.float64, [1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert torch.isnan(count_pearson(c_t, n_t)) and torch.isnan(count_spearman(c_t, n_t))
    assert torch.isnan(count_variance_explained(c_t, n_t))
    assert float(count_pearson(c_t, n_t, zero_variance=0.0)) == 0.0  # bpnet-lite


def test_count_metrics_dict_of_floats():
    predicted, totals = count_case()
    y = np.log1p(totals)
    out = count_metrics(predicted, totals, names=COUNT_METRICS_ALL)
    assert list(out) == list(COUNT_METRICS_ALL) and all(isinstance(v, float) for v in out.values())
    assert out["spearman"] == pytest.approx(spearmanr(predicted, y)[0], rel=1e-9)
    assert out["variance_explained"] == pytest.approx(ref_variance_explained(y, predicted), rel=1e-9)
    assert list(count_metrics(predicted, totals)) == ["pearson", "spearman", "mse"]
    assert count_metrics([1.0], [3.0]) == {"pearson": None, "spearman": None,
                                           "mse": pytest.approx((np.log(4) - 1) ** 2)}
    assert count_metrics([], []) == {"pearson": None, "spearman": None, "mse": None}
    assert count_metrics([1.0, 2.0], [3.0, 3.0])["pearson"] is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_average_and_ordinal_ranks_match_scipy_rankdata(dtype):
    x = np.random.default_rng(2).integers(0, 6, size=(4, 3, 40)).astype(np.float64)
    x[0, 0] = 1.0  # all tied
    expected = np.apply_along_axis(rankdata, -1, x)
    assert_close(average_ranks(torch.as_tensor(x, dtype=dtype)), expected, 0, 0)
    ordinal = np.apply_along_axis(lambda r: rankdata(r, method="ordinal"), -1, x)
    assert_close(ordinal_ranks(torch.as_tensor(x, dtype=dtype)), ordinal, 0, 0)


def test_average_ranks_propagate_nan():
    ranks = average_ranks(torch.tensor([3.0, float("nan"), 1.0, 3.0]))
    assert torch.isnan(ranks[1]) and ranks[[0, 2, 3]].tolist() == [2.5, 1.0, 2.5]
