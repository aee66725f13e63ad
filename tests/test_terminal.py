"""The summary on a terminal: the full table when it fits, else compact tables that fit 80 columns, with every
number the summary holds (four significant digits) and nothing cut."""

import io
import re

import numpy as np
import pytest
from rich.console import Console

from bpnet_eval.pipeline import score
from bpnet_eval.report.terminal import compact_rows, print_summary
from bpnet_eval.summary import summarize


@pytest.fixture(scope="module")
def grouped_summary():
    rng = np.random.default_rng(3)
    observed = rng.poisson(0.4, size=(60, 2, 80))
    logits = rng.normal(size=(60, 2, 80))
    logcounts = np.log1p(observed.sum(axis=(1, 2)))[:, None] + rng.normal(0, 0.3, size=(60, 1))
    result = score((logits, logcounts), observed, metrics="all", device="cpu", read_workers=0)
    peak = np.arange(60) % 3 == 0
    return summarize(result.columns, peak, result.summary["settings"], result.summary["inputs"])


def printed(summary, width, terminal=True, wide=False) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None)
    print_summary(summary, console, wide=wide)
    return console.file.getvalue()


def test_at_80_columns_every_line_fits_and_no_number_is_cut(grouped_summary):
    text = printed(grouped_summary, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text.replace("profile_…", "")
    assert "means by region group" in text and "peaks" in text and "nonpeaks" in text


def test_the_compact_tables_hold_every_statistic_at_four_significant_digits(grouped_summary):
    text = printed(grouped_summary, 80)
    main, groups = text.split("means by region group")
    lines = [line.split() for line in main.splitlines()]
    tracks = grouped_summary["settings"]["track_names"]
    rows = [(label, metric) for label, metric in compact_rows(grouped_summary["metrics"], tracks) if metric]
    body = [fields for fields in lines if fields and fields[0] in {label.strip() for label, _ in rows}]
    assert len(body) == len(rows)
    for (label, metric), fields in zip(rows, body):
        stats = grouped_summary["metrics"][metric]
        expected = ["nan" if stats[s] is None else float(f"{stats[s]:.4g}") for s in ("mean", "median", "q1", "q3")]
        shown = [value if value == "nan" else float(value) for value in fields[1:5]]
        assert fields[0] == label.strip() and shown == expected, metric
    group_lines = [line.split() for line in groups.splitlines() if line.strip().startswith("counts ")]
    for fields in group_lines:
        statistic = fields[1]
        expected = [grouped_summary["counts"][statistic]] + [grouped_summary["groups"][g]["counts"][statistic]
                                                             for g in ("peaks", "nonpeaks")]
        assert [float(v) for v in fields[2:]] == [float(f"{v:.4g}") for v in expected]


def test_per_track_rows_follow_their_metric():
    metrics = {name: {} for name in ("observed_counts", "profile_mnll", "count_log1p_mse", "profile_mnll_plus",
                                     "profile_mnll_minus", "profile_jsd_distance", "profile_jsd_distance_plus",
                                     "profile_jsd_distance_minus")}
    assert compact_rows(metrics, ["plus", "minus"]) == [
        ("observed_counts", "observed_counts"), ("count_log1p_mse", "count_log1p_mse"), ("profile_…", None),
        ("  mnll", "profile_mnll"), ("    plus", "profile_mnll_plus"), ("    minus", "profile_mnll_minus"),
        ("  jsd_distance", "profile_jsd_distance"), ("    plus", "profile_jsd_distance_plus"),
        ("    minus", "profile_jsd_distance_minus")]


def test_a_wide_terminal_a_pipe_and_wide_show_the_full_table(grouped_summary):
    for text in (printed(grouped_summary, 400), printed(grouped_summary, 80, terminal=False),
                 printed(grouped_summary, 80, wide=True)):
        assert "mean (peaks)" in text and "profile_jsd_observed_shuffled_minus" in text
    assert "…" not in printed(grouped_summary, 80, terminal=False)


@pytest.mark.slow
def test_progress_counts_a_shards_own_regions_and_the_last_line_gives_the_time(tmp_path):
    from tests.support.cases import make_case
    from tests.support.cli import run_cli

    case = make_case(tmp_path, n=40)
    done = run_cli("score", case.predictions, *case.bigwigs, "--shard", "2/2", "--batch-size", "8",
                   "--out", tmp_path / "s2")
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("bpnet-eval: scored")]
    assert progress[-1].startswith("bpnet-eval: scored 20/20 regions") and "(regions 21..40)" in done.stderr
    done = run_cli("score", case.predictions, *case.bigwigs, "--no-plots", "--out", tmp_path / "r")
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"report written to {re.escape(str(tmp_path / 'r'))}/ \(40 regions, \d+\.\d s\)", last), last


@pytest.mark.slow
@pytest.mark.parametrize("json_output", [False, True])
def test_a_closed_stdout_is_one_line_at_most_never_a_traceback(tmp_path, json_output):
    """``bpnet-eval score ... >&-``: the report is written; the table is left out; --json, whose only output
    is stdout, is an error that says where the summary is."""
    import os
    import subprocess

    from tests.support.cases import make_case
    from tests.support.cli import CLI

    case = make_case(tmp_path, n=20)
    args = [str(CLI), "score", str(case.predictions), *map(str, case.bigwigs), "--no-plots", "--out",
            str(tmp_path / "r")] + (["--json"] if json_output else [])
    done = subprocess.run(args, stdout=None, stderr=subprocess.PIPE, text=True, timeout=300,
                          preexec_fn=lambda: os.close(1))
    assert "Traceback" not in done.stderr and (tmp_path / "r" / "summary.json").exists()
    if json_output:
        errors = [line for line in done.stderr.splitlines() if line.startswith("bpnet-eval: error:")]
        assert done.returncode == 1 and len(errors) == 1 and "stdout is closed" in errors[0]
    else:
        assert done.returncode == 0, done.stderr


def test_no_writable_temporary_directory_leaves_the_caches_unset(monkeypatch, tmp_path):
    import tempfile

    from bpnet_eval import process

    def nowhere():
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "gettempdir", nowhere)
    environ = {"HOME": str(tmp_path / "missing-home")}
    assert process.configure_caches(environ) == {} and environ == {"HOME": str(tmp_path / "missing-home")}


def test_numpy_blas_runs_one_thread_unless_the_environment_says():
    """The CLI's process settings leave numpy's BLAS without a thread pool (its idle threads spin after each call)."""
    import os
    import subprocess
    import sys

    from bpnet_eval import process

    environ = {}
    assert process.one_blas_thread(environ) and environ == {"OPENBLAS_NUM_THREADS": "1"}
    given = {"OPENBLAS_NUM_THREADS": "8"}
    assert not process.one_blas_thread(given) and given == {"OPENBLAS_NUM_THREADS": "8"}
    code = ("import os, sys; from bpnet_eval.process import tune_process; tune_process(); import numpy; "
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"})
    assert done.stdout.split() == ["1", "1"], done.stderr  # one thread: no BLAS pool


def test_the_progress_bar_on_a_terminal_starts_no_thread(monkeypatch):
    """The live bar is redrawn at each update, not by a thread of its own: a running thread makes forking unsafe
    (``environment.fork_is_safe``), and a run forks its reading processes while the bar is shown (with a refresh
    thread, a run in a terminal read its bigWigs in a thread and decoded its files one after the other)."""
    import io
    import threading

    from rich.console import Console

    from bpnet_eval.cli import common

    shown = io.StringIO()
    monkeypatch.setattr(common, "stderr", Console(file=shown, force_terminal=True, width=80))
    before = threading.active_count()
    with common.ProgressReporter(True) as progress:
        assert progress._bar is not None and threading.active_count() == before
        progress(512, 1024)
        assert "512/1024" in shown.getvalue() and threading.active_count() == before
        progress(1024, 1024)
    assert "1024/1024" in shown.getvalue()
