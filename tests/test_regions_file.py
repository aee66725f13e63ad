"""regions.tsv written by two processes (``report.regions_file``): byte for byte what one process writes
(``tables.regions_tsv``), whatever the share of each process, and the same report from the command line with
the forked writer and without it (fork not safe). A failure or a kill of the forked writer is one error line
and no report; an error, Ctrl-C or a kill of the main process stops the forked writer and leaves --out as it
was, with nothing beside it."""

import errno
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from bpnet_eval.cli import run
from bpnet_eval.groups import Grouping
from bpnet_eval.regions import Regions
from bpnet_eval.report import regions_file as regions_module
from bpnet_eval.report.regions_file import part_path, regions_file, split_row
from bpnet_eval.report.tables import REGION_ROWS_PER_PIECE, regions_tsv
from bpnet_eval.environment import fork_is_safe
from bpnet_eval.workers import ForkedCall, WorkerStopped
from tests.support.cases import make_case
from tests.support.cli import CLI
from tests.support.processes import alive, process_state, snapshot, stop_promptly, wait_for

pytestmark = pytest.mark.skipif(not fork_is_safe(), reason="the forked writer needs fork on Linux, no threads")
QUIET = ("-q", "--no-plots")


@pytest.fixture
def forks(monkeypatch):
    """Every region count forks the writer (the command line's too); returns ``(fork, pids)``: a ``ForkedCall`` that
    records the pid of every writer it forks."""
    monkeypatch.setattr(regions_module, "FORK_MIN_ROWS", 0)
    pids = []

    class Recorded(ForkedCall):
        def __init__(self, call, what):
            super().__init__(call, what)
            pids.append(self._pid)

    monkeypatch.setattr("bpnet_eval.cli.common.report_fork", lambda: Recorded)
    return Recorded, pids


def awkward_table(n, peaks=True, groups=True, seed=0):
    """``(regions, columns, groupings)`` of ``n`` regions: peak labels, a grouping with regions in no group and in
    several, and numbers ``%.12g`` writes in every way (NaN, infinities, -0.0, huge, subnormal, integers)."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 10**9, n)
    regions = Regions(np.array(["chr1", "chrUn_KI270742v1", "chrX"], dtype=object)[rng.integers(0, 3, n)], start,
                      start + 1000, rng.random(n) < 0.5 if peaks else None)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, 5e-324, 123456789012345.0, 1 / 3])
    columns = {"observed_counts": rng.integers(0, 10**6, n).astype(np.float64),
               "profile_mnll": rng.normal(size=n) * 10.0 ** rng.integers(-8, 8, n),
               "odd": special[rng.integers(0, len(special), n)]}
    grouping = Grouping("gc", ["low", "mid", "high"], rng.random((n, 3)) < 0.4, "gc.tsv", "row number (1-based)")
    return regions, columns, [grouping] if groups else []


def written(path, regions, columns, groupings, **options):
    with regions_file(path, regions, columns, groupings, **options):
        pass
    return path.read_bytes()


def test_split_row_gives_this_process_the_last_share():
    assert [split_row(10, share) for share in (0.0, 0.3, 0.5, 1.0, -1.0, 2.0)] == [10, 7, 5, 0, 10, 0]


@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("n", [0, 1, REGION_ROWS_PER_PIECE + 1, 3 * REGION_ROWS_PER_PIECE + 17])
@pytest.mark.parametrize("peaks, groups", [(True, True), (False, False)], ids=["peaks-groups", "plain"])
def test_forked_writer_writes_what_one_process_writes(tmp_path, forks, n, share, peaks, groups):
    fork, pids = forks
    regions, columns, groupings = awkward_table(n, peaks, groups)
    expected = "".join(regions_tsv(regions, columns, groupings)).encode()
    (tmp_path / "alone").mkdir()
    (tmp_path / "two").mkdir()
    assert written(tmp_path / "alone" / "regions.tsv", regions, columns, groupings) == expected  # fork=None
    assert not pids
    assert written(tmp_path / "two" / "regions.tsv", regions, columns, groupings, share=share, fork=fork) == expected
    assert len(pids) == 1 and not alive(pids[0])  # forked, and reaped
    assert os.listdir(tmp_path / "two") == ["regions.tsv"]  # the hidden part is gone


def test_few_regions_are_written_by_this_process(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(regions_module, "FORK_MIN_ROWS", 10)
    regions, columns, groupings = awkward_table(9)
    written(tmp_path / "regions.tsv", regions, columns, groupings, fork=lambda *args: calls.append(args))
    assert not calls


def failing_in_the_child(monkeypatch, how):
    """``write_file`` of the forked writer fails (``how``: an OSError, a kill, or a 30 s wait first); this process's
    own writes are untouched."""
    parent, real = os.getpid(), regions_module.write_file

    def write_file(path, text, **options):
        if os.getpid() != parent:
            if how == "disk-full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            if how == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(30)
        real(path, text, **options)

    monkeypatch.setattr(regions_module, "write_file", write_file)


@pytest.mark.parametrize("how, error, message", [("disk-full", OSError, "No space left"),
                                                 ("killed", WorkerStopped, "process writing regions.tsv stopped")])
def test_a_failing_forked_writer_raises_here_and_leaves_no_part(tmp_path, forks, monkeypatch, how, error, message):
    fork, pids = forks
    failing_in_the_child(monkeypatch, how)
    regions, columns, groupings = awkward_table(3000)
    with pytest.raises(error, match=message):
        written(tmp_path / "regions.tsv", regions, columns, groupings, share=0.5, fork=fork)
    assert not part_path(tmp_path / "regions.tsv").exists() and not alive(pids[0])


def test_an_error_here_stops_the_forked_writer_at_once(tmp_path, forks, monkeypatch):
    fork, pids = forks
    failing_in_the_child(monkeypatch, "slow")
    regions, columns, groupings = awkward_table(3000)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with regions_file(tmp_path / "regions.tsv", regions, columns, groupings, fork=fork):
            raise KeyboardInterrupt
    assert time.monotonic() - started < 10 and not alive(pids[0])
    assert not part_path(tmp_path / "regions.tsv").exists()


# ------------------------------------------------------------------------------------------ the command line
def test_the_command_line_forks_the_writer_only_where_fork_is_safe(monkeypatch):
    from bpnet_eval import environment
    from bpnet_eval.cli.common import report_fork

    assert report_fork() is ForkedCall
    monkeypatch.setattr(environment, "fork_is_safe", lambda: False)
    assert report_fork() is None


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("case"), n=300, length=40, seed=4, peak=np.arange(300) % 3 == 0)


def score(case, out, *extra):
    return run(["score", str(case.predictions), *map(str, case.bigwigs), "-o", str(out), *extra])


@pytest.mark.parametrize("extra", [QUIET, ("-q", "--no-plots", "--preset", "bpnet-lite")], ids=["plain", "preset"])
def test_report_is_the_same_with_the_forked_writer_and_without(case, tmp_path, forks, monkeypatch, extra):
    _, pids = forks
    assert score(case, tmp_path / "forked", *extra) == 0 and len(pids) == 1
    monkeypatch.setattr("bpnet_eval.cli.common.report_fork", lambda: None)  # fork not safe: all in this process
    assert score(case, tmp_path / "here", *extra) == 0 and len(pids) == 1
    assert snapshot(tmp_path / "forked") == snapshot(tmp_path / "here")
    assert sorted(os.listdir(tmp_path)) == ["forked", "here"]


@pytest.mark.slow
def test_report_with_figures_is_the_same_with_the_forked_writer_and_without(case, tmp_path, forks, monkeypatch):
    """With figures the forked writer formats every row (share 0) while the figures are drawn."""
    pytest.importorskip("matplotlib")
    _, pids = forks
    assert score(case, tmp_path / "forked", "-q", "--plots") == 0 and len(pids) == 1
    monkeypatch.setattr("bpnet_eval.cli.common.report_fork", lambda: None)
    assert score(case, tmp_path / "here", "-q", "--plots") == 0
    assert snapshot(tmp_path / "forked") == snapshot(tmp_path / "here")


@pytest.mark.parametrize("how, fragment", [("disk-full", "No space left on device"),
                                           ("killed", "the process writing regions.tsv stopped")])
def test_a_failing_forked_writer_is_one_line_and_no_report(case, tmp_path, forks, monkeypatch, capsys, how,
                                                           fragment):
    _, pids = forks
    out = tmp_path / "area" / "out"
    assert score(case, out, *QUIET) == 0
    before = snapshot(out)
    failing_in_the_child(monkeypatch, how)
    capsys.readouterr()
    code = score(case, out, *QUIET, "--count-loss-weight", "2")
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == (3 if how == "disk-full" else 1) and len(lines) == 1, err
    assert lines[0].startswith("bpnet-eval: error: ") and fragment in lines[0] and "Traceback" not in err
    assert snapshot(out) == before and os.listdir(out.parent) == ["out"]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)


# The command line's entry point, its forked writer waiting (its pid in a file) until the test stops the run.
STOPPED_RUN = r"""
import os, sys, time
from bpnet_eval.cli import main
from bpnet_eval.report import regions_file

parent, real, pid_file = os.getpid(), regions_file.write_file, sys.argv[1]


def write_file(path, text, **options):
    if os.getpid() != parent:
        with open(pid_file, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(60)
    real(path, text, **options)


regions_file.FORK_MIN_ROWS, regions_file.write_file = 0, write_file
sys.argv = ["bpnet-eval", *sys.argv[2:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "kill"])
def test_stopping_the_run_while_the_forked_writer_writes_leaves_out_as_it_was(case, tmp_path, stop):
    out = tmp_path / "area" / "out"
    assert score(case, out, *QUIET) == 0
    before = snapshot(out)
    marker = tmp_path / "writer.pid"
    process = subprocess.Popen([str(CLI.parent / "python"), "-c", STOPPED_RUN, str(marker), "score",
                                str(case.predictions), *map(str, case.bigwigs), "-o", str(out), *QUIET,
                                "--count-loss-weight", "2"], stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: marker.exists() and marker.read_text(), process)
        writer = int(marker.read_text())
        err = stop_promptly(process, stop)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 10
    while process_state(writer) not in (None, "Z") and time.monotonic() < deadline:  # it dies with its parent
        time.sleep(0.01)
    assert process_state(writer) in (None, "Z")
    if stop == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        assert snapshot(out) == before  # the private directory beside it goes with the next run
        assert score(case, out, *QUIET) == 0 and os.listdir(out.parent) == ["out"]
        return
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["bpnet-eval: error: interrupted; no report was written"]
    assert snapshot(out) == before and os.listdir(out.parent) == ["out"]
    assert json.loads((out / "summary.json").read_text())["count_loss_weight"] == 1.0
