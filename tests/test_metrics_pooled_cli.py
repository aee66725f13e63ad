"""The pooled auPRC end to end: regions below BPNet's depth filter give undefined auPRC (null in the summary
files, NaN columns counted in n_undefined), never a crash; a run that spills its bins to disk writes the
numbers of one that keeps them in memory."""

import json

import numpy as np
import pytest

from tests.support.cases import make_case
from tests.support.checks import numbers, read_columns
from tests.support.cli import run_cli

@pytest.mark.slow
@pytest.mark.parametrize("flags", [("--preset", "bpnet"), ("--metrics", "all")])
def test_no_region_passing_bpnets_depth_filter_is_undefined_not_a_crash(tmp_path, flags):
    case = make_case(tmp_path, n=20, length=50, large_rows=())  # at most ~2 reads per position: all below 166.7
    assert (case.observed.sum(axis=-1).mean(axis=-1) <= 2.5 / 0.015).all()
    out = tmp_path / "report"
    result = run_cli("score", case.predictions, *case.bigwigs, *flags, "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile_auprc"] == {"binsize=1": None, "binsize=10": None}
    if flags[1] == "bpnet":
        written = json.loads((out / "bpnet_metrics.json").read_text())
        assert written["profile"] == {"binsize=1": {"auprc": None}, "binsize=10": {"auprc": None}}
    else:
        columns = read_columns(out / "regions.tsv")
        for name in ("profile_auprc_bin1", "profile_auprc_bin10_plus"):
            assert np.isnan(numbers(columns, name)).all()
            assert summary["metrics"][name]["n_undefined"] == 20 and summary["metrics"][name]["n"] == 0


def test_pooled_auprc_spilled_to_disk_equals_in_memory(monkeypatch):
    from bpnet_eval import score, spill

    rng = np.random.default_rng(4)
    observed = rng.poisson(rng.gamma(0.4, 3.0, size=(50, 2, 80))).astype(np.float64)
    observed[::2, :, 30:40] += 40  # every other region passes BPNet's depth filter
    logits = np.round(np.log(observed + 1) + rng.normal(size=observed.shape), 1)
    logcounts = np.log1p(observed.sum(axis=(1, 2)))[:, None]
    values = {}
    for name, run_values in (("memory", spill.RUN_VALUES), ("spilled", 37)):
        monkeypatch.setattr(spill, "RUN_VALUES", run_values)
        monkeypatch.setattr(spill, "BLOCK_VALUES", 5)
        values[name] = score((logits, logcounts), observed, preset="bpnet", device="cpu", batch_size=8
                             ).summary["profile_auprc"]
    assert values["memory"]["binsize=1"] is not None
    assert values["spilled"] == pytest.approx(values["memory"], rel=1e-12)


@pytest.mark.parametrize("attack", ["nan_logit", "overflow"])
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_pooled_auprc_leaves_out_the_regions_a_run_skips(attack, device):
    """``--nonfinite skip`` with ``--preset bpnet`` (numpy, no torch): a region skipped before scoring (a NaN
    logit) or after (its MNLL overflows) adds no bin to the pooled auPRC, which is that of the other regions."""
    from bpnet_eval import Policies, score

    rng = np.random.default_rng(8)
    observed = rng.poisson(rng.gamma(0.4, 3.0, size=(40, 2, 80))).astype(np.float64)
    observed[::2, :, 30:40] += 40  # every other region passes BPNet's depth filter
    logits = np.round(np.log(observed + 1) + rng.normal(size=observed.shape), 1)
    logcounts = np.log1p(observed.sum(axis=(1, 2)))[:, None]
    bad = 6  # passes the depth filter: its bins would count
    assert observed[bad].sum(axis=-1).mean() > 2.5 / 0.015
    if attack == "nan_logit":
        logits[bad, 1, 5] = np.nan
    else:  # z - max overflows to -inf where counts were observed
        logits[bad, 0, :] = -1.7e308
        logits[bad, 0, 0] = 1.7e308
    rest = np.arange(len(observed)) != bad
    options = dict(preset="bpnet", device=device, batch_size=16)
    result = score((logits, logcounts), observed, policies=Policies(nonfinite="skip"), **options)
    assert [entry["row"] for entry in result.summary["skipped"]] == [bad + 1]
    without = score((logits[rest], logcounts[rest]), observed[rest], **options)
    assert result.summary["profile_auprc"]["binsize=1"] is not None
    assert result.summary["profile_auprc"] == without.summary["profile_auprc"]
