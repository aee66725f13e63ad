"""The pieces of a batch computed by several threads (``compute.piece_threads``) give every number bit for bit as
one thread does: per-region columns of every metric set and preset, the pooled auPRC, and a whole run."""

import json

import numpy as np
import pytest
import torch

from bpnet_eval.compute import BatchComputer, piece_threads, threaded_piece_rows
from bpnet_eval.metrics.profile import chunk_rows
from bpnet_eval.presets import PRESETS, make_plan

PLANS = [("all", None), ("jsd_shuffled,spearman,auprc_bin10", None)] + [("default", preset) for preset in PRESETS]


def hostile_batch(n=300, length=1000, seed=3):
    """Mostly zeros and ties: sparse counts, empty regions, one strand only, a huge pile, tied and float32 logits."""
    rng = np.random.default_rng(seed)
    observed = rng.poisson(rng.gamma(0.05, 2.0, size=(n, 2, length))).astype(np.float32)
    observed[::7] = 0  # no counts at all
    observed[5::11, 1] = 0  # counts on the plus strand only
    observed[9, 0, 400:410] = 20000  # a pile far beyond the rest
    logits = (np.log(observed + 0.5) + rng.normal(0, 1.0, size=observed.shape)).astype(np.float32)
    logits[13] = 1.5  # every logit tied
    logits[17] = np.round(logits[17])  # many ties
    logcounts = np.log1p(observed.sum(axis=(1, 2)))[:, None].astype(np.float32) + 0.3
    return logits, logcounts, observed


def columns_with(threads, plan, batch, first_row=0, skip=None):
    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", plan)
    screen = None if skip is None else (lambda columns, defined: skip)
    with torch.inference_mode(), piece_threads(computer, threads):
        columns = computer(*batch, first_row=first_row, screen=screen)
    auprc = computer.pooled_auprc.result() if computer.pooled_auprc is not None else None
    return columns, auprc


@pytest.mark.parametrize("threads,n", [(3, 300), (2, 610)], ids=["cache-sized-pieces", "larger-pieces-computed-whole"])
@pytest.mark.parametrize("metrics,preset", PLANS)
def test_threads_give_the_numbers_of_one_thread(metrics, preset, threads, n):
    batch = hostile_batch(n)
    step = threaded_piece_rows(batch[0].shape, threads)
    assert len(batch[0]) > 3 * step and n % step  # several pieces, the last one short
    assert step == chunk_rows(batch[0].shape) if threads == 3 else step > chunk_rows(batch[0].shape)
    plan = make_plan(metrics, preset)
    skip = np.zeros(len(batch[0]), bool)
    skip[[2, 100, n - 1]] = True  # rows the pooled auPRC leaves out
    one, one_auprc = columns_with(1, plan, batch, first_row=1000, skip=skip)
    many, many_auprc = columns_with(threads, plan, batch, first_row=1000, skip=skip)
    assert list(one) == list(many)
    for name in one:
        np.testing.assert_array_equal(one[name], many[name], err_msg=name)  # NaN where NaN, bit for bit otherwise
    assert one_auprc == many_auprc


@pytest.mark.parametrize("metrics,preset", PLANS)
def test_a_batch_leaves_no_reference_cycle(metrics, preset):
    """Every plan: nothing a batch made is left in a reference cycle, which only the cyclic garbage collector frees (it
    runs by object counts, not bytes: one holding each batch's tensors let a --metrics all run grow to 3.3 GB)."""
    import gc

    batch, plan = hostile_batch(120), make_plan(metrics, preset)
    columns_with(1, plan, batch)  # imports and caches first
    gc.collect()
    gc.disable()
    try:
        columns_with(1, plan, batch)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_piece_threads_restore_torch_and_the_map_and_leave_seed_plans_alone():
    before = torch.get_num_threads()
    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("all"))
    with piece_threads(computer, 2):
        assert torch.get_num_threads() == 1 and computer.map_pieces is not map
    assert torch.get_num_threads() == before and computer.map_pieces is map
    seed_only = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("default"))
    with piece_threads(seed_only, 4):
        assert seed_only.map_pieces is map and torch.get_num_threads() == before


def test_an_error_in_a_piece_reaches_the_caller_and_the_pool_ends(monkeypatch):
    import bpnet_eval.compute as compute

    def failing(logits, *args):
        if args[4] >= 130:  # first_row: a later piece fails
            raise FloatingPointError("piece failed")
        return real(logits, *args)

    real = compute.metric_columns
    monkeypatch.setattr(compute, "metric_columns", failing)
    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("all"))
    with pytest.raises(FloatingPointError, match="piece failed"):
        with piece_threads(computer, 2):
            computer(*hostile_batch(n=200))
    assert computer.map_pieces is map


def test_a_run_with_threads_equals_one_thread(tmp_path):
    """Through the Python API (the CLI gives ``threads`` its allotted CPUs): every column and the summary."""
    import bpnet_eval

    logits, logcounts, observed = hostile_batch(n=260, length=200)
    results = [bpnet_eval.score((logits, logcounts), observed, metrics="all", device="cpu", threads=t, batch_size=100)
               for t in (1, 2)]
    assert results[0].columns.keys() == results[1].columns.keys()
    for name in results[0].columns:
        np.testing.assert_array_equal(results[0].columns[name], results[1].columns[name], err_msg=name)
    assert json.dumps(results[0].summary, sort_keys=True) == json.dumps(results[1].summary, sort_keys=True)


def test_the_pieces_start_before_the_seed_losses_are_computed(monkeypatch):
    """With a thread pool, a batch's pieces are computed beside its seed losses: the seed's MNLL waits here until a
    piece has started, which it never would if the pieces began only after it."""
    import threading

    import bpnet_eval.compute as compute

    piece_started, waited = threading.Event(), []

    def piece(*args):
        piece_started.set()
        return real_piece(*args)

    def seed_mnll(*args):
        waited.append(piece_started.wait(10))
        return real_mnll(*args)

    real_piece, real_mnll = compute.metric_columns, compute.mnll_per_region
    monkeypatch.setattr(compute, "metric_columns", piece)
    monkeypatch.setattr(compute, "mnll_per_region", seed_mnll)
    batch = hostile_batch(n=3 * chunk_rows((1, 2, 1000)))
    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("all"))
    with piece_threads(computer, 2):
        threaded = computer(*batch)
    assert waited == [True]
    monkeypatch.setattr(compute, "mnll_per_region", real_mnll)
    alone = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("all"))(*batch)
    assert list(threaded) == list(alone)
    for name in alone:
        np.testing.assert_array_equal(threaded[name], alone[name], err_msg=name)


def test_a_piece_thread_gets_fewer_larger_pieces_but_two_a_thread_where_the_batch_allows():
    """At most ``THREADED_PIECE_VALUES`` values a piece, at least a cache-sized one (``chunk_rows``), and at least two
    pieces a thread where a batch holds that many cache-sized ones: with 8 threads, no thread waits for work."""
    from bpnet_eval.compute import THREADED_PIECE_VALUES

    assert threaded_piece_rows((1024, 2, 1000), 2) == 256  # four pieces of 2 x 1000 profiles
    assert threaded_piece_rows((1024, 2, 1000), 4) == 128
    assert threaded_piece_rows((1024, 2, 1000), 8) == chunk_rows((1024, 2, 1000)) == 65
    assert threaded_piece_rows((1024, 1, 1000), 2) == 256
    assert threaded_piece_rows((16384, 1, 250), 2) == THREADED_PIECE_VALUES // 250  # the most values a piece
    assert threaded_piece_rows((262, 8, 1000), 2) == THREADED_PIECE_VALUES // 8000  # 8 tracks: 65 regions
    assert threaded_piece_rows((40, 2, 1000), 2) == chunk_rows((40, 2, 1000))  # few regions: one cache-sized piece
    for shape in [(1024, 2, 1000), (300, 2, 1000), (7, 2, 1000), (262, 8, 1000), (1024, 1, 2114)]:
        for threads in (1, 2, 3, 8):
            rows = threaded_piece_rows(shape, threads)
            assert chunk_rows(shape) <= rows <= max(chunk_rows(shape), THREADED_PIECE_VALUES // (shape[1] * shape[2]))


def test_piece_threads_are_capped():
    from bpnet_eval.compute import MAX_PIECE_THREADS

    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("all"))
    with piece_threads(computer, 64):
        assert computer.map_pieces.__self__._max_workers == MAX_PIECE_THREADS


def test_a_failed_batch_drops_its_pieces_not_started(monkeypatch):
    """After the first failing piece, the pool ends without computing the batch's other pieces (Ctrl-C, an error)."""
    import threading
    import time

    import bpnet_eval.compute as compute

    started = []

    def slow(logits, *args):
        started.append(args[4])
        if args[4] == 0:
            raise FloatingPointError("first piece failed")
        time.sleep(0.2)
        return real(logits, *args)

    real = compute.metric_columns
    monkeypatch.setattr(compute, "metric_columns", slow)
    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("all"))
    batch = hostile_batch(n=20 * chunk_rows((1, 2, 1000)))  # 20 pieces
    with pytest.raises(FloatingPointError):
        with piece_threads(computer, 2):
            computer(*batch)
    assert len(started) < 10 and threading.active_count() == 1


def test_every_piece_thread_warms_up_torchs_kernels_before_any_piece(monkeypatch):
    """The main thread and each of the pool's threads run ``warm_up_kernels`` (MKL's vector math set up once per
    thread, single-threaded torch) before the first piece is computed."""
    import threading

    import bpnet_eval.compute as compute

    events = []
    real = compute.warm_up_kernels
    monkeypatch.setattr(compute, "warm_up_kernels",
                        lambda: events.append(("warm", threading.current_thread().name)) or real())
    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", make_plan("all"))
    with piece_threads(computer, 3):
        assert len(events) == 4  # before the block's first piece
        pieces = list(computer.map_pieces(lambda k: (threading.current_thread().name, torch.get_num_threads()),
                                          range(12)))
    warmed = [name for kind, name in events]
    assert warmed[0] == threading.current_thread().name
    assert {name for name, _ in pieces} <= set(warmed[1:])  # every piece in a warmed thread
    assert len(set(warmed[1:])) == 3 and all(name.startswith("bpnet-eval-piece") for name in warmed[1:])
    assert all(threads == 1 for _, threads in pieces)


@pytest.mark.parametrize("metrics,preset", [("all", None), ("default", "bpnet-lite")])
def test_seed_terms_computed_where_the_batch_is_read_give_the_same_columns(metrics, preset):
    """On the CPU in float64 the computer takes the seed's terms of the logits and of the counts computed elsewhere
    (as ``SeedComputer``): every column the same as it computes them itself; in float32 it takes none."""
    from bpnet_eval import seed

    batch = hostile_batch(n=150)
    plan = make_plan(metrics, preset)
    computer = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", plan)
    assert computer.logit_terms is seed.logit_terms and computer.count_terms is seed.count_terms
    given = computer(*batch, terms=seed.logit_terms(batch[0]), counted=seed.count_terms(batch[2]))
    alone = BatchComputer(1.0, ["plus", "minus"], "cpu", "float64", plan)(*batch)
    assert list(given) == list(alone)
    for name in alone:
        np.testing.assert_array_equal(given[name], alone[name], err_msg=name)
    assert BatchComputer(1.0, ["plus", "minus"], "cpu", "float32", plan).logit_terms is None


def test_a_run_of_every_metric_hands_the_seed_terms_read_to_the_computer(monkeypatch):
    """``score --metrics all`` on the CPU: each batch's seed MNLL gets the terms of its logits and counts computed
    where it was read (the reading thread or processes), as the seed-only run's does."""
    import bpnet_eval
    from bpnet_eval import seed

    given, real = [], seed.mnll_per_region

    def mnll_per_region(logits, observed, terms=None, counted=None):
        given.append((terms is not None, counted is not None))
        return real(logits, observed, terms, counted)

    monkeypatch.setattr(seed, "mnll_per_region", mnll_per_region)
    logits, logcounts, observed = hostile_batch(n=260, length=200)
    bpnet_eval.score((logits, logcounts), observed, metrics="all", device="cpu", batch_size=100)
    assert given == [(True, True)] * 3


@pytest.mark.parametrize("numpy_on_cpu", [True, False], ids=["numpy", "torch"])
def test_the_pooled_auprc_converts_each_piece_as_the_whole_batch_would(numpy_on_cpu):
    """Logits and counts as stored (float32) are converted piece by piece: the same keys, mask and auPRC as from the
    batch converted first, also for non-integer counts whose float32 sum would cross the region mask's threshold."""
    from bpnet_eval.compute import TensorPooledAuprc
    from bpnet_eval.metrics.auprc import auprc_region_mask

    logits, _, observed = hostile_batch(n=400, length=500)
    observed = observed.copy()
    observed[20:30] = 0
    observed[20:30, :, :300] = np.float32(0.5555556)  # per strand ~166.67: the mask's threshold, which
    as_stored = torch.from_numpy(observed[20:21])  # the float32 sum misses and the float64 sum passes
    assert not auprc_region_mask(as_stored) and auprc_region_mask(as_stored.to(torch.float64))
    results = []
    for stored in (True, False):
        pooled = TensorPooledAuprc()
        pooled.numpy_on_cpu = numpy_on_cpu
        o, z = torch.from_numpy(observed), torch.from_numpy(logits)
        if stored:
            pooled.update(o, z, map_pieces=map, dtype=torch.float64)
        else:
            pooled.update(o.to(torch.float64), z.to(torch.float64), map_pieces=map)
        results.append((pooled.result(), dict(pooled._positives)))
    assert results[0] == results[1]
