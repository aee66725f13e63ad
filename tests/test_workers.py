"""Worker processes: batches read ahead and calls made in the background give what the main process would,
failures are raised in the main process, no worker is left behind."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from tests.support.cases import make_case
from tests.support.cli import CLI, run_cli
from tests.support.processes import alive, process_state

from bpnet_eval.errors import InputError
import bpnet_eval.inputs as inputs_module
from bpnet_eval.inputs import batch_bounds, open_inputs
from bpnet_eval.pipeline import score
from bpnet_eval import environment as environment_module
from bpnet_eval.cli.common import FiguresInSteps, figure_painter
from bpnet_eval.options import Job
from bpnet_eval.report.figures import FIGURE_FILES
from bpnet_eval.environment import fork_is_safe
from bpnet_eval.workers import BackgroundCall, ForkedCall, ProcessReadAhead, WorkerStopped, call_forked
from bpnet_eval.sources.base import TruthSource
from bpnet_eval.sources.bigwig import BigWigReader

pytestmark = pytest.mark.skipif(not fork_is_safe(), reason="process read-ahead needs fork on Linux, no threads")


class RowSource(TruthSource):
    """Batch ``(i, j)`` holds ``row * 10 + track`` everywhere; optionally fails at one row."""

    def __init__(self, n_tracks=2, length=7, fail_at=None, how=None):
        self.n_tracks, self.length, self.fail_at, self.how = n_tracks, length, fail_at, how
        self.paths = ["rows.bw"]

    def read(self, i, j):
        if self.fail_at is not None and i <= self.fail_at < j:
            if self.how == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            raise InputError(f"rows.bw: data block of row {self.fail_at} does not decompress")
        rows = np.arange(i, j, dtype=np.float32)[:, None, None] * 10
        return np.broadcast_to(rows + np.arange(self.n_tracks)[None, :, None], (j - i, self.n_tracks, self.length))


def expected(i, j, n_tracks=2, length=7):
    return RowSource(n_tracks, length).read(i, j)


@pytest.mark.parametrize("memory", [1, 1 << 20], ids=["fewest-slots", "every-batch-a-slot"])
@pytest.mark.parametrize("workers, n_tracks", [(1, 2), (2, 2), (3, 2), (2, 3), (3, 3)])
def test_every_batch_arrives_intact_while_held(workers, n_tracks, memory):
    """Batches shared out whole (more workers than tracks) or each worker reading its own tracks of every batch."""
    bounds = batch_bounds(0, 103, 10)
    ahead = ProcessReadAhead(RowSource(n_tracks), bounds, 7, workers=workers, held=2, memory=memory)
    if 1 < workers <= n_tracks:  # by tracks: one slot per batch held or ahead
        assert ahead.tracks is not None and sorted(sum(ahead.tracks, [])) == list(range(n_tracks))
        assert len(ahead._slots) == (2 + 2 if memory == 1 else len(bounds))
    else:
        per_worker = 2 + -(-2 // workers) if memory == 1 else -(-len(bounds) // workers)  # least, or one per batch
        assert ahead.tracks is None and len(ahead._slots) == workers * per_worker
    try:
        previous = None
        for i, j in bounds:
            batch = ahead.read(i, j)
            np.testing.assert_array_equal(batch, expected(i, j, n_tracks))
            if previous is not None:  # still intact while the next batch is in use (held=2)
                np.testing.assert_array_equal(previous[1], expected(*previous[0], n_tracks))
            previous = ((i, j), batch)
    finally:
        ahead.close()
    assert ahead.workers == workers


def test_a_failure_in_a_worker_is_raised_by_read_with_its_message():
    bounds = batch_bounds(0, 60, 10)
    ahead = ProcessReadAhead(RowSource(fail_at=35), bounds, 7, workers=2, memory=1)
    pids = list(ahead._pids)
    try:
        for i, j in bounds[:3]:
            np.testing.assert_array_equal(ahead.read(i, j), expected(i, j))
        with pytest.raises(InputError, match="row 35 does not decompress"):
            ahead.read(*bounds[3])
    finally:
        ahead.close()
    assert not any(alive(pid) for pid in pids)


def test_a_killed_worker_is_reported_not_waited_for():
    bounds = batch_bounds(0, 40, 10)
    ahead = ProcessReadAhead(RowSource(fail_at=25, how="killed"), bounds, 7, workers=1, memory=1)
    try:
        for i, j in bounds[:2]:
            ahead.read(i, j)
        with pytest.raises(WorkerStopped, match="rows.bw stopped before rows 21..30.*--read-workers 0"):
            ahead.read(*bounds[2])
    finally:
        ahead.close()


def test_closing_early_stops_every_worker():
    bounds = batch_bounds(0, 10_000, 10)
    ahead = ProcessReadAhead(RowSource(), bounds, 7, workers=3, memory=1)
    pids = list(ahead._pids)
    ahead.read(*bounds[0])
    ahead.close()
    assert pids and not any(alive(pid) for pid in pids)


def test_batches_out_of_order_are_refused():
    bounds = batch_bounds(0, 30, 10)
    ahead = ProcessReadAhead(RowSource(), bounds, 7)
    try:
        with pytest.raises(RuntimeError, match="in the order given"):
            ahead.read(10, 20)
    finally:
        ahead.close()


def test_scores_equal_with_worker_processes_and_in_process(tmp_path):
    case = make_case(tmp_path, n=157, length=64, seed=11)
    results = {workers: score(str(case.predictions), [str(p) for p in case.bigwigs], batch_size=16,
                              read_workers=workers, device="cpu")
               for workers in (0, 1, 3)}
    for workers in (1, 3):
        assert results[workers].columns.keys() == results[0].columns.keys()
        for name, values in results[0].columns.items():
            np.testing.assert_array_equal(results[workers].columns[name], values, err_msg=name)


class SlowRowSource(RowSource):
    """``RowSource`` whose batch holding ``slow_at`` takes ``seconds`` to read."""

    def __init__(self, slow_at, seconds, **kwargs):
        super().__init__(**kwargs)
        self.slow_at, self.seconds = slow_at, seconds

    def read(self, i, j):
        if i <= self.slow_at < j:
            time.sleep(self.seconds)
        return super().read(i, j)


def batch_sum(batch):
    return float(batch.sum(dtype=np.float64))


def wait_for_messages(fd, count, seconds=30.0):
    """Wait until a worker's result pipe holds at least ``count`` messages (each at least a header and an empty
    payload's pickle)."""
    import fcntl
    import pickle
    import struct
    import termios

    least = count * (24 + len(pickle.dumps((0, None), protocol=pickle.HIGHEST_PROTOCOL)))
    deadline = time.monotonic() + seconds
    while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0] < least:
        assert time.monotonic() < deadline, "the worker did not fill its slots"
        time.sleep(0.01)


def test_work_comes_with_its_batch_from_a_worker_ahead_and_is_left_to_the_main_process_it_keeps_waiting():
    """A worker at least a batch ahead of the one the main process reads (or will read next) runs ``work`` on the
    batch it filled; for that batch or the one after it (the first two, a slow one) it leaves the work (None), so
    the main process does it itself."""
    bounds = batch_bounds(0, 80, 8)
    reader = ProcessReadAhead(SlowRowSource(6 * 8, 1.5, n_tracks=1), bounds, 7, workers=1, memory=1, work=batch_sum)
    try:
        assert reader.depth == 4
        wait_for_messages(reader._result_fds[0], 4)  # the worker fills every slot it has meanwhile
        worked = []
        for i, j in bounds:
            batch, value = reader.read_with_work(i, j)
            np.testing.assert_array_equal(batch, expected(i, j, 1))
            assert value is None or value == batch_sum(batch)
            worked.append(value is not None)
    finally:
        reader.close()
    assert worked[:2] == [False, False] and all(worked[2:4]) and worked[6] is False


@pytest.mark.parametrize("workers, n_tracks", [(2, 2), (1, 1)])
def test_work_too_big_for_the_side_travels_through_the_pipe_and_split_tracks_get_none(workers, n_tracks):
    """A value bigger than its batch's side memory comes through the pipe; where workers split a batch's tracks
    and nothing joins their values (no ``merge_work``), none runs ``work`` (None for every batch)."""
    bounds = batch_bounds(0, 40, 8)
    reader = ProcessReadAhead(RowSource(n_tracks), bounds, 7, workers=workers, memory=1,
                              work=lambda batch: np.repeat(batch.ravel(), 3))
    try:
        time.sleep(0.3)
        for i, j in bounds:
            batch, value = reader.read_with_work(i, j)
            if workers > 1:
                assert value is None
            elif value is not None:
                np.testing.assert_array_equal(value, np.repeat(expected(i, j, n_tracks).ravel(), 3))
    finally:
        reader.close()


@pytest.mark.parametrize("workers", [1, 2], ids=["whole-batches", "a-process-per-track"])
def test_count_terms_from_the_reading_process_give_the_scores_of_the_main_process(tmp_path, monkeypatch, workers):
    """The seed path's count terms (``seed.count_terms``, dense and sparse rows) computed by the reading process
    (which it does while ahead: here the main process waits 0.05 s per batch), or by a process per track of its
    tracks and joined (``seed.interleaved_count_terms``), give the same columns bit for bit as the main process
    computing them all."""
    from bpnet_eval.seed import SeedComputer, count_terms

    case = make_case(tmp_path, n=157, length=64, seed=5)
    in_main = []
    monkeypatch.setattr(SeedComputer, "count_terms", staticmethod(lambda observed: in_main.append(1) or
                                                                  count_terms(observed)))
    files = [str(p) for p in case.bigwigs]
    alone = score(str(case.predictions), files, batch_size=16, read_workers=0, device="cpu")
    assert len(in_main) == 10
    in_main.clear()
    beside = score(str(case.predictions), files, batch_size=16, read_workers=workers, device="cpu",
                   progress=lambda done, total: time.sleep(0.05))
    assert len(in_main) <= 4  # the first two batches, and any the main process had to wait for
    assert beside.columns.keys() == alone.columns.keys()
    for name, values in alone.columns.items():
        np.testing.assert_array_equal(beside.columns[name], values, err_msg=name)


def test_work_on_split_tracks_is_joined_into_the_work_of_the_whole_batch():
    """Where each worker reads some tracks of every batch, each runs ``work`` on its tracks (once ahead of the main
    process) and ``merge_work`` joins the values with the groups of tracks, S and L: the whole batch's value."""
    bounds = batch_bounds(0, 80, 8)
    calls = []

    def merge(parts, groups, n_tracks, length):
        calls.append((groups, n_tracks, length))
        joined = np.zeros((len(parts[0]), n_tracks))
        for part, group in zip(parts, groups):
            joined[:, group] = part
        return joined

    reader = ProcessReadAhead(SlowRowSource(6 * 8, 1.5, n_tracks=3), bounds, 7, workers=2, memory=1,
                              work=lambda batch: batch.sum(axis=-1, dtype=np.float64), merge_work=merge)
    try:
        assert reader.tracks == [[0, 1], [2]]
        for w in range(2):
            wait_for_messages(reader._result_fds[w], reader.depth)
        worked = []
        for i, j in bounds:
            batch, value = reader.read_with_work(i, j)
            np.testing.assert_array_equal(batch, expected(i, j, 3))
            if value is not None:
                np.testing.assert_array_equal(value, batch.sum(axis=-1, dtype=np.float64))
            worked.append(value is not None)
    finally:
        reader.close()
    assert worked[:2] == [False, False] and all(worked[2:reader.depth])
    assert calls and all(call == ([[0, 1], [2]], 3, 7) for call in calls)


def test_open_inputs_uses_worker_processes_for_bigwigs(tmp_path):
    case = make_case(tmp_path, n=50, length=32)
    with open_inputs(Job.of(str(case.predictions), [str(p) for p in case.bigwigs], batch_size=8,
                            read_workers=2)) as inputs:
        assert isinstance(inputs.observed, ProcessReadAhead) and inputs.read_workers == 2
        pids = list(inputs.observed._pids)
        batches = list(inputs.batches())
    assert len(batches) == 7 and not any(alive(pid) for pid in pids)
    with open_inputs(Job.of(str(case.predictions), [str(p) for p in case.bigwigs], batch_size=8,
                            read_workers=0)) as inputs:
        assert inputs.observed is inputs.truth and inputs.read_workers == 0


def test_the_process_that_forks_the_readers_reads_its_few_rows_block_by_block(tmp_path, monkeypatch):
    """Where reading processes read the run's batches, the main process reads only the example regions: its own
    bigWig readers are not told the run's windows, so those few rows do not decode the files whole (which took
    ~0.9 s of a 100k-region run's ~4.5 s), nor do those a merge of shards reads from the files opened again; the
    values are the same."""
    from bpnet_eval.sources import bigwig

    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)  # big files: decoded whole only when due
    monkeypatch.setattr(bigwig, "_RESIDENT_AFTER_SHARE", 0.5)
    case = make_case(tmp_path, n=1000, length=50)
    paths = [str(p) for p in case.bigwigs]
    with open_inputs(Job.of(str(case.predictions), paths, batch_size=100, read_workers=2)) as inputs:
        assert isinstance(inputs.observed, ProcessReadAhead)
        observed = np.concatenate([batch[3] for batch in inputs.batches()])
        readers = inputs.truth._readers
        assert len(readers[0]._block_start) >= 5 and all(r._resident_due > 2 for r in readers)
        _, _, example = inputs.read_rows([5, 400])
        assert all(r._resident is None for r in readers)
    np.testing.assert_array_equal(observed, case.observed)
    np.testing.assert_array_equal(example, case.observed[[5, 400]])
    with open_inputs(Job.of(str(case.predictions), paths, batch_size=100, read_workers=0)) as inputs:
        next(iter(inputs.batches()))  # read in this process: the run's windows decide the decode at the first read
        assert all(r._resident is not None for r in inputs.truth._readers)
    # a merge of shards reads its example regions from the files opened again: those rows alone
    monkeypatch.setattr(bigwig.BigWigReader, "_decode_whole", lambda self: pytest.fail("decoded whole"))
    got = inputs_module.read_rows(Job.of(str(case.predictions), paths), [5, 400])
    np.testing.assert_array_equal(got[2], case.observed[[5, 400]])


@pytest.mark.slow
def test_a_damaged_block_read_by_a_worker_is_one_line_from_the_cli(tmp_path):
    case = make_case(tmp_path, n=60, length=32)
    with BigWigReader(str(case.bigwigs[1])) as reader:
        offset, size = int(reader._block_offset[-1]), int(reader._block_size[-1])
    data = bytearray(case.bigwigs[1].read_bytes())
    data[offset:offset + size] = b"\xff" * size  # the index still points at it; zlib cannot read it
    damaged = tmp_path / "damaged.bw"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = run_cli("score", case.predictions, case.bigwigs[0], damaged, "-o", out, "--batch-size", "8",
                     "--read-workers", "1", "--quiet", "--no-plots")
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged.bw: " in lines[0] and "does not decompress" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not (out / "summary.json").exists()


def square_sum(values, power):
    if power < 0:
        raise InputError(f"power {power} is negative")
    if power == 99:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"sum": float((np.asarray(values) ** power).sum()), "pid": os.getpid()}


def test_background_call_prepares_then_returns_the_result():
    with BackgroundCall(lambda: None, square_sum, "summing") as call:
        call.submit(np.arange(10), 2)
        result = call.result()
    assert result["sum"] == 285.0 and result["pid"] != os.getpid()
    assert not alive(result["pid"])


def test_call_forked_runs_the_call_named_here_in_this_process_after_forking_the_others():
    calls = {power: (lambda power=power: square_sum(np.arange(10), power)) for power in (3, 1, 2)}
    values = call_forked(calls, "summing", here=1)
    assert list(values) == [3, 1, 2] and [v["sum"] for v in values.values()] == [2025.0, 45.0, 285.0]
    assert values[1]["pid"] == os.getpid() and values[3]["pid"] != os.getpid() != values[2]["pid"]
    assert not alive(values[3]["pid"]) and not alive(values[2]["pid"])
    with pytest.raises(InputError, match="power -1 is negative"):  # its error, the forked ones reaped
        call_forked({"slow": lambda: time.sleep(30), "bad": lambda: square_sum([1, 2], -1)}, "summing", here="bad")


@pytest.mark.parametrize("power, error, message", [(-1, InputError, "power -1 is negative"),
                                                   (99, WorkerStopped, "process summing stopped")])
def test_background_call_raises_what_the_call_raised_or_that_it_died(power, error, message):
    with BackgroundCall(lambda: None, square_sum, "summing") as call:
        call.submit([1, 2], power)
        with pytest.raises(error, match=message):
            call.result()


def test_values_of_many_pipe_fulls_arrive_whole_both_ways():
    """Arguments and a value of tens of MB (hundreds of pipe-fulls, read into one buffer) arrive intact."""
    values = np.random.default_rng(3).normal(size=3_000_000)
    with BackgroundCall(lambda: None, lambda x: x[::-1].copy(), "reversing") as call:
        call.submit(values)
        np.testing.assert_array_equal(call.result(), values[::-1])


def test_background_call_closed_without_a_call_stops():
    call = BackgroundCall(lambda: time.sleep(30), square_sum, "summing")
    pid = call._pid
    call.close()
    assert not alive(pid)


def test_call_forked_returns_every_value_in_order_from_processes_of_their_own():
    calls = {power: (lambda power=power: square_sum(np.arange(10), power)) for power in (3, 1, 2)}
    values = call_forked(calls, "summing")
    assert list(values) == [3, 1, 2] and [v["sum"] for v in values.values()] == [2025.0, 45.0, 285.0]
    pids = {v["pid"] for v in values.values()}
    assert len(pids) == 3 and os.getpid() not in pids and not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("power, error, message", [(-1, InputError, "power -1 is negative"),
                                                   (99, WorkerStopped, "process summing stopped")])
def test_call_forked_raises_what_a_call_raised_or_that_it_died(power, error, message):
    calls = {"slow": lambda: time.sleep(30), "bad": lambda: square_sum([1, 2], power)}
    with pytest.raises(error, match=message):
        call_forked({"bad": calls["bad"], "slow": calls["slow"]}, "summing")


def test_call_forked_inside_a_background_call():
    """A worker forks workers of its own (the painter draws each figure in a process): pipes stay intact."""
    def fan_out(n):
        return call_forked({k: (lambda k=k: square_sum(np.arange(n), k)) for k in (1, 2)}, "summing")

    with BackgroundCall(lambda: None, fan_out, "fanning out") as call:
        call.submit(10)
        values = call.result()
    assert [v["sum"] for v in values.values()] == [45.0, 285.0]


@pytest.mark.slow  # draws every figure twice, ~3 s
def test_figures_drawn_in_the_background_equal_those_drawn_here(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    case = make_case(tmp_path, n=40, length=64)
    result = score(str(case.predictions), [str(p) for p in case.bigwigs], device="cpu")
    examples = result.examples
    with figure_painter(True, background=False) as paint:
        drawn = paint(result.columns, result.summary, examples)
        assert callable(drawn)
        here = drawn()
    with figure_painter(True) as paint:
        start = paint(result.columns, result.summary, examples)
        assert callable(start)
        pending = start()
        assert callable(pending)
        there = pending()
    with figure_painter(True) as paint:  # the example panels started early, before the summary (as score does)
        paint.early(result.columns, examples, result.track_names)
        early = paint(result.columns, result.summary, examples)()()
    steps = FiguresInSteps()  # in a process that cannot fork: every figure drawn by the call that returns them
    monkeypatch.setattr(environment_module, "fork_is_safe", lambda: False)
    steps("examples", result.columns, result.track_names, examples)
    assert steps("rest", None, result.summary, None) == here
    monkeypatch.undo()
    with figure_painter(False) as paint:
        paint.early(result.columns, examples, result.track_names)  # nothing to start
        assert paint(result.columns, result.summary, examples) == {}
    assert set(here) == set(FIGURE_FILES) and here == there == early
    assert list(early) == list(FIGURE_FILES)  # in their order, whichever process drew them


@pytest.mark.slow
def test_cli_report_is_the_same_with_and_without_worker_processes(tmp_path):
    case = make_case(tmp_path, n=90, length=48, seed=5)
    reports = {}
    for workers in ("0", "2"):
        out = tmp_path / f"out{workers}"
        result = run_cli("score", case.predictions, *case.bigwigs, "-o", out, "--batch-size", "8", "--read-workers",
                         workers, "--read-ahead-mb", "0", "--quiet")
        assert result.returncode == 0, result.stderr
        reports[workers] = out
    for name in ("regions.tsv", "summary.tsv", "counts_scatter.png", "profile_histograms.png", "profile_examples.png"):
        assert (reports["0"] / name).read_bytes() == (reports["2"] / name).read_bytes(), name


@pytest.mark.slow
def test_workers_die_with_a_killed_main_process(tmp_path):
    pytest.importorskip("matplotlib")
    case = make_case(tmp_path, n=3000, length=200, seed=2)
    process = subprocess.Popen([str(CLI), "score", case.predictions, *case.bigwigs, "-o", tmp_path / "out",
                                "--batch-size", "1", "--read-workers", "1", "--read-ahead-mb", "0", "--plots"],
                               stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    first = process.stderr.readline()
    assert first.startswith("bpnet-eval: scored "), first
    children = [int(p) for p in open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()]
    assert len(children) == 2, "expected a reading and a drawing process"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(process_state(p) not in (None, "Z") for p in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(process_state(p) in (None, "Z") for p in children)


@pytest.mark.parametrize("cpus, n_batches, expected", [(1, 50, 0), (2, 50, 1), (3, 50, 1), (8, 50, 4), (64, 50, 4),
                                                       (16, 1, 0)])
def test_default_read_workers_leave_half_the_cpus_to_computing(monkeypatch, cpus, n_batches, expected):
    monkeypatch.setattr(inputs_module, "allotted_cpus", lambda: cpus)
    assert inputs_module.default_read_workers(n_batches) == expected


def test_bigwig_truth_read_into_equals_read_with_negated_tracks_and_padded_rows(tmp_path):
    """What a reading process writes into shared memory (``read_into``) is what ``read`` returns: a minus strand
    stored negative is read as magnitudes, and a batch with a padded or skipped row reads as ``read`` does."""
    from bpnet_eval.regions import Regions
    from bpnet_eval.sources.base import ReadPlan
    from bpnet_eval.sources.tracks import BigWigTruth
    from tests.support.cases import write_bigwig

    case = make_case(tmp_path, n=30, length=50)
    minus = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
    for i in range(30):
        minus[case.chrom[i]][case.start[i]:case.end[i]] = -case.observed[i, 1]
    negative = write_bigwig(tmp_path / "minus_negative.bw", case.chrom_sizes, minus)
    regions = Regions(case.chrom, case.start, case.end)
    truth = BigWigTruth([str(case.bigwigs[0]), str(negative)], regions)
    assert truth.describe()["read_as_magnitudes"] == [str(negative)]
    planned = truth.planned(ReadPlan((), frozenset({12}), frozenset({3})))
    for source in (truth, planned):
        for i, j in batch_bounds(0, 30, 8):
            out = np.full((j - i, 2, 50), 7.0, dtype=np.float32)
            source.read_into(i, j, out)
            np.testing.assert_array_equal(out, source.read(i, j))
    np.testing.assert_array_equal(truth.read(0, 30), case.observed.astype(np.float32))
    truth.close()
    for paths in ([case.bigwigs[0]], [negative]):  # one track: read straight into the shared memory, or not
        one = BigWigTruth([str(p) for p in paths], regions)
        for i, j in batch_bounds(0, 30, 8):
            out = np.full((j - i, 1, 50), 7.0, dtype=np.float32)
            one.read_into(i, j, out)
            np.testing.assert_array_equal(out, one.read(i, j))
        np.testing.assert_array_equal(one.read(0, 30)[:, 0], np.abs(case.observed[:, 0 if paths[0] != negative else 1]))
        one.close()


@pytest.mark.skipif(not (fork_is_safe() and hasattr(os, "memfd_create") and inputs_module.allotted_cpus() > 1),
                    reason="Linux fork, memfd and 2 CPUs")
@pytest.mark.parametrize("failing", [False, True])
def test_a_reading_process_decodes_the_files_side_by_side_and_reads_what_it_would_alone(tmp_path, monkeypatch, failing):
    """``start_reading`` forks a process decoding each file after the first (as many at once as CPUs); the first read
    of a track takes its file from there (shared memory, read-only); where that process fails, the file is decoded
    by the read itself: the same values either way, and no process is left behind."""
    from bpnet_eval.regions import Regions
    from bpnet_eval.sources import bigwig
    from bpnet_eval.sources.tracks import BigWigTruth

    if failing:
        monkeypatch.setattr(bigwig.BigWigReader, "decode_whole_into", lambda self, fd: os._exit(1))
    case = make_case(tmp_path, n=60, n_tracks=3, length=50)
    truth = BigWigTruth([str(p) for p in case.bigwigs], Regions(case.chrom, case.start, case.end))
    truth.will_read(0, 60)
    truth.start_reading(None, ForkedCall)
    helpers = {s: call._pid for s, (call, _) in truth._decoding.running().items()}
    assert sorted(helpers) == list(range(1, min(3, inputs_module.allotted_cpus())))
    got = np.concatenate([truth.read(i, j) for i, j in batch_bounds(0, 60, 16)])
    np.testing.assert_array_equal(got, case.observed.astype(np.float32))
    assert not truth._decoding and not any(alive(pid) for pid in helpers.values())
    for s in helpers:
        assert truth._readers[s]._resident.key.flags.writeable == failing  # mapped from the helper unless it failed
    truth.close()
    unread = BigWigTruth([str(p) for p in case.bigwigs], Regions(case.chrom, case.start, case.end))
    unread.will_read(0, 60)
    unread.start_reading([0, 2], ForkedCall)
    pids = [call._pid for call, _ in unread._decoding.running().values()]
    unread.close()  # closed before any read: the decoding processes are stopped
    assert pids and not any(alive(pid) for pid in pids)


@pytest.mark.skipif(not (fork_is_safe() and hasattr(os, "memfd_create")), reason="Linux fork and memfd")
@pytest.mark.parametrize("cpus", [2, 3])
def test_with_more_files_than_cpus_each_cpu_decodes_its_share_and_the_next_process_starts_when_one_is_taken(
        tmp_path, monkeypatch, cpus):
    """Seven files on ``cpus`` CPUs: the reading process decodes the first of every ``cpus`` files at its read, and the
    others are decoded beside, ``cpus - 1`` processes at a time, each next one forked when a file is taken; the values
    are the files', and no process is left behind."""
    import threading

    from bpnet_eval.regions import Regions
    from bpnet_eval.sources import tracks as tracks_module
    from bpnet_eval.sources.tracks import BigWigTruth

    monkeypatch.setattr(tracks_module, "allotted_cpus", lambda: cpus)
    case = make_case(tmp_path, n=40, n_tracks=7, length=50)
    truth = BigWigTruth([str(p) for p in case.bigwigs], Regions(case.chrom, case.start, case.end))
    truth.will_read(0, 40)
    truth.start_reading(None, ForkedCall)
    beside = [s for s in range(7) if s % cpus]
    assert sorted(truth._decoding.running()) == beside[:cpus - 1]
    assert all(s in truth._decoding for s in beside) and not any(s in truth._decoding for s in range(0, 7, cpus))
    started = {}
    for s in range(7):  # the first batch's read, track by track: each file taken starts the next one's process
        started.update({t: call._pid for t, (call, _) in truth._decoding.running().items()})
        out = np.zeros((16, 7, 50), np.float32)
        truth.read_into(0, 16, out, [s])
        np.testing.assert_array_equal(out[:, s], case.observed[:16, s])
        assert len(truth._decoding.running()) <= cpus - 1
    assert sorted(started) == beside and not truth._decoding
    for s in range(7):  # mapped read-only from the process that decoded it, or decoded here
        assert truth._readers[s]._resident.key.flags.writeable == (s not in beside)
    np.testing.assert_array_equal(truth.read(0, 40), case.observed.astype(np.float32))
    assert not any(alive(pid) for pid in started.values())
    truth.close()

    # a thread running when a file is taken: no process is forked after that, and the queued files are decoded here
    truth = BigWigTruth([str(p) for p in case.bigwigs], Regions(case.chrom, case.start, case.end))
    truth.will_read(0, 40)
    truth.start_reading(None, ForkedCall)
    first = {t: call._pid for t, (call, _) in truth._decoding.running().items()}
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        np.testing.assert_array_equal(truth.read(0, 40), case.observed.astype(np.float32))
        assert not truth._decoding.running() and not truth._decoding
        assert [s for s in range(7) if not truth._readers[s]._resident.key.flags.writeable] == sorted(first)
    finally:
        release.set()
        thread.join()
    assert not any(alive(pid) for pid in first.values())
    truth.close()


@pytest.mark.skipif(not (fork_is_safe() and hasattr(os, "memfd_create")), reason="Linux fork and memfd")
def test_eight_tracks_scored_with_their_files_decoded_in_waves_beside_give_the_in_process_scores(tmp_path, monkeypatch):
    """A multi-task run (8 bigWigs on 2 CPUs: four decoded by the reading process, four beside, one after another)
    scores exactly as reading every file in this process."""
    from bpnet_eval.sources import tracks as tracks_module

    monkeypatch.setattr(tracks_module, "allotted_cpus", lambda: 2)
    case = make_case(tmp_path, n=120, n_tracks=8, length=40, seed=3)
    files = [str(p) for p in case.bigwigs]
    alone = score(str(case.predictions), files, batch_size=16, read_workers=0, device="cpu")
    beside = score(str(case.predictions), files, batch_size=16, read_workers=1, device="cpu")
    assert beside.columns.keys() == alone.columns.keys() and len(alone.columns["profile_mnll"]) == 120
    for name, values in alone.columns.items():
        np.testing.assert_array_equal(beside.columns[name], values, err_msg=name)


class CountingPredictions:
    """``ArrayPredictions`` of 40 regions that records which batches were read, and fails at ``fail_at`` (a row)."""

    def __init__(self, fail_at=None, seconds=0.0):
        from bpnet_eval.sources.predictions import ArrayPredictions

        self.inner = ArrayPredictions(np.zeros((40, 2, 7), np.float32), np.zeros((40, 1)))
        self.n, self.n_tracks, self.length, self.path = 40, 2, 7, "p.h5"
        self.fail_at, self.seconds, self.read_from = fail_at, seconds, []

    def read(self, i, j):
        time.sleep(self.seconds)
        self.read_from.append(i)
        if self.fail_at is not None and i <= self.fail_at < j:
            raise InputError(f"p.h5: rows {i + 1}..{j} do not decompress")
        return self.inner.read(i, j)


class WaitingRows(RowSource):
    """``RowSource`` whose first batch waits until ``ready()`` (as a bigWig's first batch waits for its decoding)."""

    def __init__(self, ready):
        super().__init__()
        self.ready, self.waited = ready, None

    def read(self, i, j):
        if i == 0:
            deadline = time.monotonic() + 10
            while not self.ready() and time.monotonic() < deadline:
                time.sleep(0.001)
            self.waited = self.ready()
        return super().read(i, j)


def test_predictions_are_read_ahead_while_the_first_observed_batch_waits():
    """The predictions of the batches after the first (``predictions_ahead`` of them) are read, and ``logits_work`` done
    on them, while the observed counts of the first batch are still being decoded; every batch still gets its own."""
    preds, memory = CountingPredictions(), 4 * 7 * 2 * 4  # 4 batches of 1 region
    assert inputs_module.predictions_ahead(preds, 1, memory) == 4
    truth = WaitingRows(lambda: len(preds.read_from) >= 4)
    batches = list(inputs_module.iter_batches(preds, truth, 1, 0, 9, logits_work=lambda logits: len(logits),
                                              memory=memory))
    assert truth.waited and preds.read_from == list(range(9))
    for i, j, (logits, logcounts), observed in batches:
        assert logits.shape == (1, 2, 7)
        np.testing.assert_array_equal(observed, expected(i, j))


def test_a_run_stopped_early_or_a_damaged_prediction_stops_the_read_ahead():
    """A damaged batch of predictions raises its own error when its batch comes (not before); a consumer that stops
    early stops the reading ahead at once (the batches queued ahead are cancelled): no more are read after it
    returns."""
    preds = CountingPredictions(fail_at=25)
    batches = inputs_module.iter_batches(preds, RowSource(), 5)
    for _ in range(5):
        next(batches)
    with pytest.raises(InputError, match="rows 26..30"):
        next(batches)
    preds = CountingPredictions(seconds=0.01)
    batches = inputs_module.iter_batches(preds, RowSource(), 1)
    next(batches)
    batches.close()
    read = len(preds.read_from)
    time.sleep(0.05)
    assert read == len(preds.read_from) <= 5 < inputs_module.predictions_ahead(preds, 1)


def test_logits_work_is_done_by_the_reading_thread_for_every_batch():
    """``logits_work`` runs where the batch is read, once per batch, and each batch gets the work of its own logits."""
    from bpnet_eval.sources.predictions import ArrayPredictions

    rng = np.random.default_rng(2)
    preds = ArrayPredictions(rng.normal(size=(23, 2, 7)), np.zeros((23, 1)))
    done = []

    def work(logits):
        done.append(len(logits))
        return logits.sum(axis=(1, 2))

    batches = list(inputs_module.iter_batches(preds, RowSource(), 5, prepare=lambda i, p, o, early, worked: (p, o, early),
                                              logits_work=work))
    assert [b[:2] for b in batches] == batch_bounds(0, 23, 5) and done == [5, 5, 5, 5, 3]
    for i, j, (predicted, observed, early) in batches:
        np.testing.assert_array_equal(early, predicted[0].sum(axis=(1, 2)))
        np.testing.assert_array_equal(observed, expected(i, j))


def test_observed_files_read_block_by_block_get_a_reading_process_each(tmp_path, monkeypatch):
    """Where the observed bigWigs are read block by block (too big to keep, even where the windows lie) and the
    reading processes are fewer than the files, with CPUs for more: one reading process per file, forked after the
    files were told the run's windows (which this process then forgets: its own few rows are read block by block);
    the same counts as read in this process. Files kept whole keep the default count."""
    from bpnet_eval.sources import bigwig

    monkeypatch.setattr(inputs_module, "allotted_cpus", lambda: 2)  # one reading process by default
    case = make_case(tmp_path, n=200, length=50)
    paths = [str(p) for p in case.bigwigs]
    job = Job.of(str(case.predictions), paths, batch_size=20)
    with open_inputs(job) as inputs:
        assert isinstance(inputs.observed, ProcessReadAhead) and inputs.observed.workers == 1  # kept whole
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 1_000)
    with open_inputs(job) as inputs:
        ahead = inputs.observed
        assert isinstance(ahead, ProcessReadAhead) and ahead.workers == 2 and ahead.tracks == [[0], [1]]
        readers = inputs.truth._readers
        assert all(r._windows is None and r._resident_due == r._resident_due_at_open > 0 for r in readers)
        pids = list(ahead._pids)
        observed = np.concatenate([batch[3] for batch in inputs.batches()])
        _, _, example = inputs.read_rows([5, 150])
        assert all(r._resident is None for r in readers)
    assert not any(alive(pid) for pid in pids)
    np.testing.assert_array_equal(observed, case.observed)
    np.testing.assert_array_equal(example, case.observed[[5, 150]])
    alone = score(str(case.predictions), paths, batch_size=20, read_workers=0, device="cpu")
    beside = score(str(case.predictions), paths, batch_size=20, device="cpu")
    for name, values in alone.columns.items():
        np.testing.assert_array_equal(beside.columns[name], values, err_msg=name)


def test_more_observed_files_read_block_by_block_than_cpus_get_a_reading_process_per_cpu(tmp_path, monkeypatch):
    """Five files read block by block on 2 CPUs: two reading processes (not one, the default), each reading its own
    files of every batch; the same counts as read in this process."""
    from bpnet_eval.sources import bigwig

    monkeypatch.setattr(inputs_module, "allotted_cpus", lambda: 2)
    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 1_000)
    case = make_case(tmp_path, n=120, n_tracks=5, length=40)
    paths = [str(p) for p in case.bigwigs]
    with open_inputs(Job.of(str(case.predictions), paths, batch_size=20)) as inputs:
        ahead = inputs.observed
        assert isinstance(ahead, ProcessReadAhead) and ahead.workers == 2
        assert sorted(t for tracks in ahead.tracks for t in tracks) == list(range(5)) and all(ahead.tracks)
        observed = np.concatenate([batch[3] for batch in inputs.batches()])
    np.testing.assert_array_equal(observed, case.observed)
