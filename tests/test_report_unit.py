"""A report directory is one unit (issue 12): attacks on --out through the installed CLI.

Every attack runs the real ``bpnet-eval`` (a fresh script, or the forked entry point) on real bigWig/HDF5
files and checks the exit code, that stderr is exactly one ``bpnet-eval: error:`` line without a traceback
(for refusals), and the listing and bytes of --out, of its parent and of the user's own files before and
after. What is guaranteed (docs/reports.md, "Guarantees"):

- --out is never a directory bpnet-eval did not write, and never holds an input: refused (exit 2), untouched;
- a run that fails, or is killed at any point, leaves --out exactly as it was (or, killed after the swap,
  the complete new report); a later run succeeds (no stale lock) and removes the killed run's leftovers;
- a rerun replaces the whole report (no file of the earlier one survives);
- a second run into an --out being written is refused at once; two runs into one --out leave one
  complete report, every file of it from the same run;
- merge refuses a partial whose columns.npz is not the one written with its partial.json, and a shard
  rerun scores such a partial again instead of skipping it; compare takes complete reports only.
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.cases import make_case, write_predictions
from tests.support.cli import CLI, run_cli
from tests.support.checks import numbers, read_columns as read_tsv
from tests.support.processes import snapshot, stop_promptly, wait_for

MARKER = ".bpnet-eval-report"
QUIET = ("-q", "--no-plots")


# ------------------------------------------------------------------------------------------- helpers
def siblings(path):
    """The names beside ``path`` in its parent (the lock file and the private directories would show here)."""
    return sorted(os.listdir(Path(path).parent))


def assert_refused(result, code, *fragments):
    """Exit ``code``, exactly one stderr line starting ``bpnet-eval: error:`` naming every fragment, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bpnet-eval: error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    return lines[0]


def assert_ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def assert_one_complete_report(out, runs, preset_file=None):
    """``out`` holds exactly one complete report, every file of it from one of ``runs``
    (``{count loss weight: predictions path}``, the weights told apart); return that weight."""
    names = sorted(os.listdir(out))
    assert "summary.json" in names and "regions.tsv" in names and "summary.tsv" in names
    assert (preset_file in names) if preset_file else not {"performance.tsv", "bpnet_metrics.json"} & set(names)
    summary = json.loads((out / "summary.json").read_text())
    weight = summary["count_loss_weight"]
    assert weight in runs, weight
    assert summary["inputs"]["predictions"]["path"] == str(runs[weight])
    table = read_tsv(out / "regions.tsv")
    mixture, mnll, mse = (numbers(table, n) for n in ("mixture_loss", "profile_mnll", "count_log1p_mse"))
    np.testing.assert_allclose(mixture, mnll + weight * mse, rtol=1e-9, atol=1e-12)  # regions.tsv of this run
    for name, values in (("mixture_loss", mixture), ("profile_mnll", mnll)):
        assert summary["metrics"][name]["mean"] == pytest.approx(values.mean(), rel=1e-9), name
    long = read_tsv(out / "summary.tsv")
    row = [k for k, (g, m, s) in enumerate(zip(long["group"], long["metric"], long["statistic"]))
           if (g, m, s) == ("all", "profile_mnll", "mean")]
    assert float(long["value"][row[0]]) == pytest.approx(mnll.mean(), rel=1e-9)  # summary.tsv of this run
    if "report.html" in names:
        assert Path(runs[weight]).stem in (out / "report.html").read_text()
    marker = json.loads((out / MARKER).read_text())  # the unit: bpnet-eval's marker lists every file
    assert marker["kind"] == "report" and sorted(marker["files"]) == [n for n in names if n != MARKER]
    return weight


def lock_is_free(out):
    """True unless a process holds the lock of ``out`` (a run killed with SIGKILL must not keep it)."""
    lock = Path(out).parent / f".{Path(out).name}.bpnet-eval.lock"
    if not lock.exists():
        return True
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def start_cli(*args):
    """The installed script in the background; stderr a pipe (progress comes as plain lines). SIGINT is reset to
    its default as at a terminal: under ``nohup`` or ``cmd &`` the suite inherits it ignored, and so would the run."""
    return subprocess.Popen([str(CLI), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def score_args(case, out, *extra, predictions=None):
    return ["score", predictions or case.predictions, *case.bigwigs, "-o", out, *extra]


# ------------------------------------------------------------------------------------------ fixtures
class Data:
    def __init__(self, root, case, other):
        self.root, self.case, self.other = root, case, other


def case_and_other(root, noise_seed: int, **case_options) -> Data:
    """A case (``make_case``) and a second predictions file for the same regions (noisier logits)."""
    case = make_case(root, **case_options)
    rng = np.random.default_rng(noise_seed)
    other = write_predictions(root / "other.h5", case.logits + rng.normal(0, 1, case.logits.shape).astype(np.float32),
                              case.logcounts, case.chrom, case.start, case.end)
    return Data(root, case, other)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small case (60 regions) and a second predictions file for the same regions."""
    return case_and_other(tmp_path_factory.mktemp("inputs"), 2, n=60, length=40, seed=11)


@pytest.fixture(scope="module")
def earlier(data, tmp_path_factory, forked):
    """A complete report (``--preset bpnet-lite``: with performance.tsv) the attacks start from."""
    out = tmp_path_factory.mktemp("earlier") / "report"
    assert_ok(forked(*score_args(data.case, out, *QUIET, "--preset", "bpnet-lite", "--count-loss-weight", "0.5")))
    return out


@pytest.fixture(scope="module")
def shards(data, tmp_path_factory, forked):
    """Partial reports of shards 1/2 and 2/2, and shard 1/2 of the other predictions."""
    root = tmp_path_factory.mktemp("shards")
    for k in (1, 2):
        assert_ok(forked(*score_args(data.case, root / f"s{k}", "-q", "--shard", f"{k}/2")))
    assert_ok(forked(*score_args(data.case, root / "other1", "-q", "--shard", "1/2", predictions=data.other)))
    return root


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A case that takes a few seconds to score (for killing and overlapping runs) and its second predictions."""
    return case_and_other(tmp_path_factory.mktemp("big"), 5, n=2000, length=100, seed=3)


def copy_of(directory, area: Path, name="out"):
    area.mkdir(parents=True, exist_ok=True)
    target = area / name
    shutil.copytree(directory, target)
    return target


# --------------------------------------------------------------- --out never touches the user's files
USER_FILES = {
    "notes": {"notes.txt": "my notes\n"},
    "own-summary-and-page": {"summary.json": '{"mine": true}\n', "report.html": "<html>mine</html>\n"},
    "own-regions-table": {"regions.tsv": "chr1\t100\t200\tmy peak\n", "sub/keep.bed": "chr2\t1\t2\n"},
}


@pytest.mark.slow
@pytest.mark.parametrize("files", USER_FILES.values(), ids=USER_FILES)
def test_out_holding_the_users_files_is_refused_and_untouched(data, tmp_path, forked, files):
    out = tmp_path / "area" / "mine"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before, beside = snapshot(out), siblings(out)
    line = assert_refused(forked(*score_args(data.case, out, *QUIET)), 2, out, "--out")
    assert "did not write" in line
    assert snapshot(out) == before and siblings(out) == beside  # nothing written, no lock file left


def place_input(data, out, which):
    """Copies of the inputs, one of them inside ``out``; the score arguments using them."""
    case = data.case
    out.mkdir(parents=True)
    outside = out.parent / "inputs"
    outside.mkdir()
    predictions, plus, minus = (shutil.copy(p, outside) for p in (case.predictions, *case.bigwigs))
    regions = outside / "windows.bed"
    if which == "predictions":
        predictions = shutil.copy(case.predictions, out)
    elif which == "truth":
        plus = shutil.copy(case.bigwigs[0], out)
    elif which == "regions":  # the case: the user's --regions file is named regions.tsv
        regions = out / "regions.tsv"
    regions.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
    return ["score", predictions, plus, minus, "--regions", regions], {"predictions": predictions, "truth": plus,
                                                                       "regions": regions}[which]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["regions", "predictions", "truth"])
def test_out_containing_an_input_is_refused_and_the_input_untouched(data, tmp_path, forked, which):
    out = tmp_path / "area" / "out"
    args, inside = place_input(data, out, which)
    before, beside = snapshot(out.parent), siblings(out)
    assert_refused(forked(*args, "-o", out, *QUIET), 2, out, "--out", inside)
    assert snapshot(out.parent) == before and siblings(out) == beside


@pytest.mark.slow
def test_out_dot_in_the_inputs_directory_is_refused(data, tmp_path, forked):
    work = tmp_path / "work"
    args, _ = place_input(data, work / "here", "predictions")
    before = snapshot(work)
    assert_refused(forked(*args, "-o", ".", *QUIET, cwd=work / "here"), 2, "--out", "preds.h5")
    assert snapshot(work) == before


@pytest.mark.slow
def test_default_out_holding_the_predictions_is_refused(data, tmp_path, forked):
    """Without -o the report goes to ./bpnet-eval-<predictions name>; here that directory holds the predictions."""
    default = tmp_path / "bpnet-eval-preds"
    default.mkdir()
    predictions = shutil.copy(data.case.predictions, default)
    before = snapshot(tmp_path)
    result = forked("score", predictions, *data.case.bigwigs, *QUIET, cwd=tmp_path)
    assert_refused(result, 2, "bpnet-eval-preds", "--out")
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_a_report_with_a_users_file_added_is_refused(earlier, data, tmp_path, forked):
    out = copy_of(earlier, tmp_path / "area")
    (out / "my_notes.txt").write_text("keep me\n")
    before, beside = snapshot(out), siblings(out)
    assert_refused(forked(*score_args(data.case, out, *QUIET)), 2, out, "my_notes.txt")
    assert snapshot(out) == before and siblings(out) == beside


@pytest.mark.slow
def test_a_partial_report_is_not_replaced_by_a_report(shards, data, tmp_path, forked):
    out = copy_of(shards / "s1", tmp_path / "area")
    before = snapshot(out)
    assert_refused(forked(*score_args(data.case, out, *QUIET)), 2, out, "partial report")
    assert snapshot(out) == before


@pytest.mark.slow
def test_a_shard_into_the_users_directory_is_refused(data, tmp_path, forked):
    out = tmp_path / "area" / "mine"
    out.mkdir(parents=True)
    (out / "partial.json").write_text('{"mine": 1}\n')
    before = snapshot(out)
    assert_refused(forked(*score_args(data.case, out, "-q", "--shard", "1/2")), 2, out, "--out")
    assert snapshot(out) == before


@pytest.mark.slow
def test_merge_into_a_partial_it_reads_is_refused(shards, tmp_path, forked):
    s1, s2 = copy_of(shards / "s1", tmp_path, "s1"), copy_of(shards / "s2", tmp_path, "s2")
    before = snapshot(tmp_path)
    assert_refused(forked("merge", s1, s2, "--out", s1, *QUIET), 2, s1, "--out")
    assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("into", ["report-a", "users-directory"])
def test_compare_into_a_report_it_reads_or_a_users_directory_is_refused(earlier, tmp_path, forked, into):
    a, b = copy_of(earlier, tmp_path, "a"), copy_of(earlier, tmp_path, "b")
    out = a
    if into == "users-directory":
        out = tmp_path / "mine"
        out.mkdir()
        (out / "compare.tsv").write_text("my own table\n")
    before = snapshot(tmp_path)
    assert_refused(forked("compare", a, b, "--out", out, "-q"), 2, out, "--out")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------- a failed run leaves the earlier report
def nan_predictions(data, tmp_path):
    logits = data.case.logits.copy()
    logits[5, 0, 3] = np.nan
    path = write_predictions(tmp_path / "nan.h5", logits, data.case.logcounts, data.case.chrom, data.case.start,
                             data.case.end)
    return [path, *data.case.bigwigs], 3, "not finite"


def missing_predictions(data, tmp_path):
    return [tmp_path / "missing.h5", *data.case.bigwigs], 3, "missing.h5"


def wrong_track_names(data, tmp_path):
    return [data.case.predictions, *data.case.bigwigs, "--track-names", "a,b,c"], 2, "--track-names"


@pytest.mark.slow
@pytest.mark.parametrize("failure", [nan_predictions, missing_predictions, wrong_track_names],
                         ids=lambda f: f.__name__)
def test_a_failed_run_leaves_the_earlier_report_byte_identical(earlier, data, tmp_path, forked, failure):
    out = copy_of(earlier, tmp_path / "area")
    before, beside = snapshot(out), siblings(out)
    args, code, fragment = failure(data, tmp_path)
    assert_refused(forked("score", *args, "-o", out, *QUIET), code, fragment)
    assert snapshot(out) == before and siblings(out) == beside
    assert_one_complete_report(out, {0.5: data.case.predictions}, "performance.tsv")


@pytest.mark.slow
def test_a_rerun_replaces_the_whole_report(earlier, data, tmp_path, forked):
    """The earlier report had --preset bpnet-lite (performance.tsv); the rerun has none: no stale file survives,
    and the directory is exactly what a run into a new directory writes."""
    out = copy_of(earlier, tmp_path / "area")
    assert (out / "performance.tsv").exists()
    assert_ok(forked(*score_args(data.case, out, *QUIET, "--count-loss-weight", "2")))
    fresh = tmp_path / "fresh" / "out"
    assert_ok(forked(*score_args(data.case, fresh, *QUIET, "--count-loss-weight", "2")))
    assert snapshot(out) == snapshot(fresh)
    assert not (out / "performance.tsv").exists() and siblings(out) == ["out"]
    assert_one_complete_report(out, {2.0: data.case.predictions})


# ------------------------------------------------------------------------------- one run at a time
@pytest.mark.slow
def test_a_second_run_while_the_first_is_writing_is_refused(big, tmp_path):
    out = tmp_path / "area" / "out"
    first = start_cli(*score_args(big.case, out, "--batch-size", "2", "--no-plots", "--count-loss-weight", "0.5"))
    try:
        line = first.stderr.readline()
        assert line.startswith("bpnet-eval: scored "), line
        # Hold the first run mid-write (its lock held) while the second starts: no race with its speed.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = run_cli(*score_args(big.case, out, *QUIET, "--count-loss-weight", "2", predictions=big.other))
            assert first.poll() is None
            assert_refused(second, 2, out, "another bpnet-eval run", f"pid {first.pid}")
            assert not out.exists()
        finally:
            os.kill(first.pid, signal.SIGCONT)
        first.communicate(timeout=300)
        assert first.returncode == 0
    finally:
        first.kill()
        first.wait()
    assert_one_complete_report(out, {0.5: big.case.predictions})
    assert siblings(out) == ["out"]


@pytest.mark.slow
def test_a_run_refuses_at_once_while_another_process_holds_the_lock(earlier, data, tmp_path):
    out = copy_of(earlier, tmp_path / "area")
    lock = out.parent / ".out.bpnet-eval.lock"
    holder = subprocess.Popen([str(CLI.parent / "python"), "-c",
                               "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'4242'); print('held', flush=True); "
                               "time.sleep(120)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(out)
        started = time.monotonic()
        result = run_cli(*score_args(data.case, out, *QUIET))
        assert_refused(result, 2, out, "another bpnet-eval run (pid 4242)", "--out")
        assert time.monotonic() - started < 60
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    assert_ok(run_cli(*score_args(data.case, out, *QUIET)))  # the holder gone, the lock is free again


# Start of the second run, as fractions of the time one run with figures takes: on the code before issue 12,
# a run without figures that writes while one with figures waits for them left regions.tsv of the one and
# summary.json of the other (both exit 0).
CONCURRENT_STARTS = (0.15, 0.35, 0.55, 0.75, 0.95, 1.15)


@pytest.mark.slow
def test_two_runs_into_one_out_leave_one_consistent_report(big, big_report, tmp_path):
    """Two runs (other predictions, other weight; the first draws figures, the second not) started apart by
    0.15..1.15 of a run's time: afterwards --out holds one complete report, every file from the same run;
    the loser, if any, is refused with one line."""
    pytest.importorskip("matplotlib")
    _, duration = big_report
    out = tmp_path / "area" / "out"
    runs = {0.5: big.case.predictions, 2.0: big.other}
    for fraction in CONCURRENT_STARTS:
        first = start_cli(*score_args(big.case, out, "-q", "--plots", "--count-loss-weight", "0.5",
                                      "--batch-size", "64"))
        time.sleep(fraction * duration)
        second = start_cli(*score_args(big.case, out, *QUIET, "--count-loss-weight", "2", "--batch-size", "64",
                                       predictions=big.other))
        results = []
        for process in (first, second):
            _, err = process.communicate(timeout=300)
            results.append((process.returncode, err))
        assert any(code == 0 for code, _ in results), results
        for code, err in results:
            if code:
                assert code == 2 and len(err.strip().splitlines()) == 1, (fraction, err)
                assert err.startswith("bpnet-eval: error: ") and "another bpnet-eval run" in err, err
        assert_one_complete_report(out, runs)
        assert siblings(out) == ["out"]


# --------------------------------------------------------------------------------------- SIGKILL
KILL_POINTS = ["first-progress", "building", "after-swap", "random-1", "random-2", "random-3"]


@pytest.fixture(scope="module")
def big_report(big, tmp_path_factory):
    """A complete report of the big case (weight 0.5) and how long that run took."""
    out = tmp_path_factory.mktemp("big_report") / "out"
    started = time.monotonic()
    assert_ok(run_cli(*score_args(big.case, out, "-q", "--count-loss-weight", "0.5", "--batch-size", "64")))
    return out, time.monotonic() - started


def private_dirs(out):
    return [n for n in siblings(out) if n.startswith(f".{out.name}.bpnet-eval-new-")]


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_any_point_leaves_the_old_report_or_the_new_one(big, big_report, tmp_path, point):
    earlier_report, duration = big_report
    out = copy_of(earlier_report, tmp_path / "area")
    before, inode = snapshot(out), os.stat(out).st_ino
    runs = {0.5: big.case.predictions, 2.0: big.other}
    process = start_cli(*score_args(big.case, out, "--count-loss-weight", "2", "--batch-size", "64",
                                    predictions=big.other))
    try:
        if point == "first-progress":
            line = process.stderr.readline()
            assert line.startswith("bpnet-eval: scored "), line
        elif point == "building":  # the new report is being assembled beside --out
            wait_for(lambda: private_dirs(out), process)
        elif point == "after-swap":  # --out is another directory now: the old report is being removed
            wait_for(lambda: os.stat(out).st_ino != inode, process)
        else:
            fraction = np.random.default_rng(KILL_POINTS.index(point)).uniform(0.3, 1.1)
            time.sleep(fraction * duration)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    if not point.startswith("random"):
        assert process.returncode == -signal.SIGKILL, f"the run ended before the kill at {point}"
    after = snapshot(out)
    if point == "building":
        assert after == before
    elif point == "after-swap":
        assert after != before
    if after != before:  # never a mix, never a part: the complete new report
        assert assert_one_complete_report(out, runs) == 2.0, point
    assert lock_is_free(out), "a killed run keeps the lock"
    assert_ok(run_cli(*score_args(big.case, out, *QUIET, "--count-loss-weight", "0.5", "--batch-size", "256")))
    assert_one_complete_report(out, runs)
    assert siblings(out) == ["out"]  # the killed run's private directory and the lock file are gone


# --------------------------------------------------------------------------- merge and compare inputs
def swap_columns(first, second):
    a, b = first / "columns.npz", second / "columns.npz"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["swapped", "from-another-run", "truncated"])
def test_merge_refuses_a_partial_whose_columns_were_replaced(shards, tmp_path, forked, damage):
    s1, s2 = copy_of(shards / "s1", tmp_path, "s1"), copy_of(shards / "s2", tmp_path, "s2")
    if damage == "swapped":
        swap_columns(s1, s2)
    elif damage == "from-another-run":
        shutil.copy(shards / "other1" / "columns.npz", s1 / "columns.npz")
    else:
        (s1 / "columns.npz").write_bytes((s1 / "columns.npz").read_bytes()[:-100])
    before = snapshot(tmp_path)
    out = tmp_path / "merged"
    assert_refused(forked("merge", s1, s2, "--out", out, *QUIET), 3, s1, "columns.npz", "rerun that shard")
    assert snapshot(tmp_path) == before and not out.exists()


@pytest.mark.slow
def test_a_shard_whose_columns_were_swapped_is_scored_again_not_skipped(shards, data, tmp_path, forked):
    s1, s2 = copy_of(shards / "s1", tmp_path, "s1"), copy_of(shards / "s2", tmp_path, "s2")
    swap_columns(s1, s2)
    rerun = assert_ok(forked(*score_args(data.case, s1, "--shard", "1/2")))
    assert "already complete" not in rerun.stderr and "scored" in rerun.stderr
    with np.load(s1 / "columns.npz") as rescored, np.load(shards / "s1" / "columns.npz") as original:
        assert rescored["_start"].tolist() == original["_start"].tolist()  # shard 1's rows again
    (s2 / "columns.npz").write_bytes((shards / "s2" / "columns.npz").read_bytes())
    assert_ok(forked("merge", s1, s2, "--out", tmp_path / "merged", *QUIET))
    assert_ok(forked("merge", shards / "s1", shards / "s2", "--out", tmp_path / "reference", *QUIET))
    assert (tmp_path / "merged" / "regions.tsv").read_bytes() == (tmp_path / "reference" / "regions.tsv").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["no-summary", "hand-made-copy"])
def test_compare_takes_complete_reports_only(earlier, tmp_path, forked, damage):
    a = copy_of(earlier, tmp_path, "a")
    b = tmp_path / "b"
    if damage == "no-summary":  # a run that did not finish
        shutil.copytree(earlier, b)
        (b / "summary.json").unlink()
    else:  # regions.tsv alone, not a directory bpnet-eval wrote
        b.mkdir()
        shutil.copy(earlier / "regions.tsv", b)
    out = tmp_path / "cmp"
    before = snapshot(tmp_path)
    line = assert_refused(forked("compare", a, b, "--out", out, "-q"), 3, b)
    assert "summary.json" in line if damage == "no-summary" else "not a report written by bpnet-eval" in line
    assert snapshot(tmp_path) == before and not out.exists()


# ------------------------------------------------------------------- the swap without renameat2 (library)
@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_output_unit_replaces_whole_or_leaves_as_it_was(tmp_path, monkeypatch, exchange):
    """``output_unit`` itself, with the atomic exchange and with the fallback (old directory renamed aside,
    new one renamed into place): a unit replaces the whole directory; a failing one leaves it as it was."""
    from bpnet_eval.report import files

    if not exchange:
        monkeypatch.setattr(files, "rename2", lambda *args: False)
    out = tmp_path / "out"
    with files.output_unit(out, "comparison") as unit:
        (unit / "compare.tsv").write_text("first\n")
    before = snapshot(out)
    with pytest.raises(RuntimeError):
        with files.output_unit(out, "comparison") as unit:
            (unit / "compare.tsv").write_text("half")
            raise RuntimeError("stopped while writing")
    assert snapshot(out) == before and siblings(out) == ["out"]
    with files.output_unit(out, "comparison") as unit:
        (unit / "compare.json").write_text("second\n")
    assert sorted(os.listdir(out)) == [MARKER, "compare.json"] and siblings(out) == ["out"]
    assert json.loads((out / MARKER).read_text())["files"] == ["compare.json"]


# ------------------------------------------------------------------------------- interrupts and odd --out
@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("point", ["first-progress", "building"])
def test_ctrl_c_leaves_the_earlier_report_as_it_was_and_says_so(big, big_report, tmp_path, point, stop):
    """SIGINT (Ctrl-C) or SIGTERM (docker stop) while scoring or while the new report is assembled: exit 130 at
    once, one line saying no report was written, and --out byte-identical to before (nothing beside it)."""
    earlier_report, _ = big_report
    out = copy_of(earlier_report, tmp_path / "area")
    before = snapshot(out)
    process = start_cli(*score_args(big.case, out, "--count-loss-weight", "2", "--batch-size", "64",
                                    predictions=big.other))
    try:
        if point == "first-progress":
            line = process.stderr.readline()
            assert line.startswith("bpnet-eval: scored "), line
        else:
            wait_for(lambda: private_dirs(out), process)
        stderr = stop_promptly(process, stop)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("bpnet-eval: error:")]
    assert errors == ["bpnet-eval: error: interrupted; no report was written"] and "Traceback" not in stderr
    assert snapshot(out) == before and siblings(out) == ["out"] and lock_is_free(out)


@pytest.mark.slow
def test_an_out_that_is_a_symlink_loop_is_refused_before_any_work(data, tmp_path, forked):
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    result = forked(*score_args(data.case, tmp_path / "loop-a"))
    line = assert_refused(result, 3, "loop-a")
    assert "scored" not in result.stderr, line  # refused up front, not after scoring
    assert sorted(os.listdir(tmp_path)) == ["loop-a", "loop-b"]
