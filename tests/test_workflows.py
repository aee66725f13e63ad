"""The shipped workflows: examples/slurm_array.sh (array tasks run locally) and examples/Snakefile
(run by snakemake when installed) write the same reports as unsharded ``score`` runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.cases import make_case, write_predictions
from tests.support.cli import CLI, REPO, run_cli

pytestmark = pytest.mark.slow  # runs the CLI, the SLURM array script and Snakemake

BESIDE_PYTHON = Path(sys.executable).parent / "snakemake"  # the test extra installs it into the venv
SNAKEMAKE = (os.environ.get("SNAKEMAKE") or (str(BESIDE_PYTHON) if BESIDE_PYTHON.exists() else None)
             or shutil.which("snakemake"))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two prediction files for the same regions and bigWigs, and their unsharded reports."""
    tmp_path = tmp_path_factory.mktemp("models")
    case = make_case(tmp_path, n=45, length=40, seed=4, name="model_a.h5")
    rng = np.random.default_rng(1)
    second = write_predictions(tmp_path / "model_b.h5", case.logits + rng.normal(0, 1, case.logits.shape).astype(np.float32),
                               case.logcounts, case.chrom, case.start, case.end)
    reports = {}
    for predictions in (case.predictions, second):
        out = tmp_path / f"unsharded_{predictions.stem}"
        result = run_cli("score", predictions, *case.bigwigs, "--device", "cpu", "--out", out, "-q", "--no-plots")
        assert result.returncode == 0, result.stderr
        reports[predictions.stem] = out
    return case, [case.predictions, second], reports


def assert_same_report(merged, unsharded):
    assert (merged / "regions.tsv").read_bytes() == (unsharded / "regions.tsv").read_bytes()
    assert (merged / "summary.json").read_text() == (unsharded / "summary.json").read_text()


def test_slurm_array_script_run_task_by_task(two_models, tmp_path):
    case, predictions, reports = two_models
    env = dict(os.environ, PREDICTIONS=" ".join(map(str, predictions)), TRUTH=" ".join(map(str, case.bigwigs)),
               N_SHARDS="2", OUT=str(tmp_path / "shards"), BPNET_EVAL=str(CLI))
    script = REPO / "examples" / "slurm_array.sh"
    for task in range(1, 2 * 2 + 1):
        run = subprocess.run(["bash", str(script)], env=dict(env, SLURM_ARRAY_TASK_ID=str(task)),
                             capture_output=True, text=True, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    merged = subprocess.run(["bash", str(script), "merge"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    for k, path in enumerate(predictions):
        assert_same_report(tmp_path / "shards" / f"model{k}" / "report", reports[path.stem])


@pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install snakemake; or set SNAKEMAKE)")
def test_snakemake_workflow_scores_sharded_and_merges(two_models, tmp_path):
    case, predictions, reports = two_models
    config = [f"predictions={','.join(map(str, predictions))}", f"truth={','.join(map(str, case.bigwigs))}",
              "shards=3", f"out={tmp_path / 'smk'}", f"bpnet_eval={CLI}"]
    run = subprocess.run([SNAKEMAKE, "-s", str(REPO / "examples" / "Snakefile"), "--cores", "2", "--quiet", "all",
                          "--config", *config], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for path in predictions:
        report = tmp_path / "smk" / path.stem / "report"
        assert_same_report(report, reports[path.stem])
        assert len(list((tmp_path / "smk" / path.stem).glob("shard-*/partial.json"))) == 3
