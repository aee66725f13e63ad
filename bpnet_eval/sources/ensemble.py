"""An ensemble of prediction sources over the same regions (fold models), read batch by batch as one source.

The ensemble of F members (logits ``z_f``, log counts ``c_f``) predicts, per region:

- profile: the mean of the members' probabilities, ``p = (1/F) sum_f softmax(z_f)``, handed on as logits
  ``log p`` (``log_softmax`` gives ``p`` back). The softmax runs over what the model normalises: all S*L
  positions jointly when it predicts one log count per region, each track's L positions when it predicts one
  per track;
- log counts (``mean-log``, the default): the mean of the members' log counts, ``(1/F) sum_f c_f`` (the log of
  the geometric mean of the predicted counts); ``log-mean``: the log of the mean of the predicted counts,
  ``log((1/F) sum_f e^{c_f})``.

The default is what kundajelab's ProCapNet (Cochran et al. 2024, bpnet-lite models) does to merge its fold
models (``merge_prediction_tracks.py``: probabilities averaged after ``exp``, log counts averaged): each half
is the average that belongs to its loss — a mixture of the probabilities for the multinomial log-likelihood, an
average on the log scale for the squared error of log counts.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, List, Optional

import numpy as np

from ..environment import allotted_cpus
from ..errors import InputError
from ..regions import Regions, chrom_key
from ..seed import row_blocks
from .base import PredictionSource

# Values of a member's logits turned into probabilities at a time: blocks of regions that stay in the CPU's cache (a
# chip batch of 1,024 x 2 x 1,000 from 8 members: 74 ms whole, 47 ms in blocks of 32 regions; the same bits).
ENSEMBLE_BLOCK_VALUES = 1 << 16
MAX_ENSEMBLE_THREADS = 4  # threads sharing out a batch's regions (numpy releases Python's lock while it computes)

LOGCOUNT_RULES = {"mean-log": "mean of the members' log counts, (1/F) sum_f c_f",
                  "log-mean": "log of the mean of the members' predicted counts, log((1/F) sum_f exp(c_f))"}
PROFILE_RULE = ("mean of the members' probabilities, (1/F) sum_f softmax(z_f) (softmax over all tracks jointly with one "
                "log count per region, per track with one per track)")


def log_softmax(logits: np.ndarray, axis) -> np.ndarray:
    """``z - log sum exp z`` over ``axis`` (a tuple of axes), shifted by the maximum; float64."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = logits - top
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_mean_exp(values: np.ndarray) -> np.ndarray:
    """``log((1/F) sum_f e^{v_f})`` over the first axis, shifted by the maximum (NaN where a value is NaN)."""
    top = values.max(axis=0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        safe = np.where(np.isfinite(top), top, 0.0)
        return safe + np.log(np.exp(values - safe).mean(axis=0))


def member_probabilities(z: np.ndarray, total: np.ndarray, blocks: list, scratch: np.ndarray, axis,
                         first: bool) -> None:
    """``softmax(z)`` over ``axis`` (in float64) of the rows ``blocks`` (slices of regions small enough for the CPU's
    cache), written into ``total`` (the first member) or added to it (through ``scratch``, one block's size)."""
    for rows in blocks:
        block = z[rows]
        probs = total[rows] if first else scratch[:len(block)]
        with np.errstate(invalid="ignore", over="ignore"):  # the largest value subtracted in float64: exact
            np.subtract(block, block.max(axis=axis, keepdims=True), out=probs, dtype=np.float64)
            np.exp(probs, out=probs)
            probs /= probs.sum(axis=axis, keepdims=True)
        if not first:
            total[rows] += probs


def ensemble_profile(logits: Iterable[np.ndarray], joint: bool,
                     again: Optional[Callable[[np.ndarray], List[np.ndarray]]] = None, threads: int = 1) -> np.ndarray:
    """``log((1/F) sum_f softmax(z_f))`` of F logits ``(b, S, L)``: softmax over (S, L) when ``joint``, else L.

    The probabilities are summed member by member (one ``exp`` each, a cache-sized block of regions at a time, the
    regions shared out among ``threads`` threads); rows where some position's mean probability underflows to 0
    (logits spread by more than ~700 within a region) are computed again in the log domain (``log_mean_exp`` of the
    members' ``log_softmax``), so every finite result is exact to float64. ``logits`` may be an iterator (each
    member's array dropped once added) where ``again(rows)`` gives the members' logits of those rows once more;
    without ``again`` the arrays are kept for those rows."""
    axis = (1, 2) if joint else 2
    total, kept, count, parts, pool = None, [], 0, [], None
    try:
        for z in logits:
            if total is None:
                total = np.empty(z.shape, np.float64)
                blocks = row_blocks(z, ENSEMBLE_BLOCK_VALUES)
                size = -(-len(blocks) // max(1, min(threads, len(blocks))))
                parts = [(blocks[k:k + size], np.empty_like(total[blocks[0]])) for k in range(0, len(blocks), size)]
                pool = ThreadPoolExecutor(len(parts), thread_name_prefix="bpnet-eval-ensemble") \
                    if len(parts) > 1 else None
            work = [(z, total, blocks, scratch, axis, count == 0) for blocks, scratch in parts]
            if pool is None:
                for args in work:
                    member_probabilities(*args)
            else:
                list(pool.map(lambda args: member_probabilities(*args), work))
            count += 1
            if again is None:
                kept.append(z)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)  # no thread outlives the call (a later fork needs none)
    total /= count
    underflow = np.flatnonzero((total == 0).any(axis=(1, 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(total, out=total)  # in place: a batch's float64 array is a fresh mapping, faulted in page by page
    if underflow.size:
        members = [z[underflow] for z in kept] if again is None else again(underflow)
        out[underflow] = log_mean_exp(np.stack([log_softmax(z, axis) for z in members]))
    return out


def members_read(members: list, i: int, j: int, ahead: Optional[int] = None) -> Iterator[tuple]:
    """Each member's ``read(i, j)`` in turn; where a member inflates its file in this process (``inflates_here``: a
    compressed .npz), the next ``ahead`` members' read meanwhile by threads (default: one per CPU, at most
    ``MAX_ENSEMBLE_THREADS``), so that members inflate side by side, at most ``ahead + 1`` of a batch's arrays held at
    once (not F). (Other members' reads are copies from memory or the disk, or from processes reading ahead: threads
    gained ~8% on 8 plain HDF5 members and cost ~100 MB of per-thread heaps.) The threads are gone when the iterator
    ends or is closed."""
    if ahead is None:
        inflating = any(getattr(member, "inflates_here", False) for member in members)
        ahead = min(MAX_ENSEMBLE_THREADS, allotted_cpus()) if inflating else 0
    if ahead < 1 or len(members) < 2:
        for member in members:
            yield member.read(i, j)
        return
    pool = ThreadPoolExecutor(min(ahead, len(members) - 1), thread_name_prefix="bpnet-eval-member")
    try:
        pending = deque(pool.submit(member.read, i, j) for member in members[1:1 + ahead])
        yield members[0].read(i, j)
        for member in members[1 + ahead:]:
            done = pending.popleft().result()
            pending.append(pool.submit(member.read, i, j))
            yield done
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # no thread outlives the batch (a later fork needs none)


def ensemble_logcounts(logcounts: List[np.ndarray], rule: str) -> np.ndarray:
    """The ensemble's log counts of F arrays ``(b, T)`` under ``rule`` (``LOGCOUNT_RULES``)."""
    stacked = np.stack([np.asarray(c, dtype=np.float64) for c in logcounts])
    return stacked.mean(axis=0) if rule == "mean-log" else log_mean_exp(stacked)


def _first_difference(a: Regions, b: Regions) -> Optional[int]:
    """The first row where two region tables differ (chromosomes up to ``chr``/``M``/``MT``), or None."""
    if len(a) != len(b):
        return min(len(a), len(b))
    differ = (a.start != b.start) | (a.end != b.end) | np.array(
        [chrom_key(str(x)) != chrom_key(str(y)) for x, y in zip(a.chrom, b.chrom)], dtype=bool)
    return int(np.flatnonzero(differ)[0]) if differ.any() else None


class EnsemblePredictions(PredictionSource):
    """The ensemble (see the module docstring) of ``members``, which must predict the same regions in the same
    shape (N, S, L) with the same kind of log counts (one per region or one per track)."""

    def __init__(self, members: List[PredictionSource], logcounts_rule: str = "mean-log"):
        first = members[0]
        for member in members[1:]:
            shape, expected = ((m.n, m.n_tracks, m.length, m.n_logcount_columns) for m in (member, first))
            if shape != expected:
                raise InputError(
                    f"{member.path}: {shape[0]} regions x {shape[1]} tracks x L = {shape[2]} with {shape[3]} log "
                    f"count(s) per region, but {first.path} has {expected[0]} x {expected[1]} x {expected[2]} with "
                    f"{expected[3]}; an ensemble averages predictions of the same regions in the same shape")
        self.members = members
        self.logcounts_rule = logcounts_rule
        self.path = ",".join(m.path for m in members)
        self.n, self.n_tracks, self.length = first.n, first.n_tracks, first.length
        self.n_logcount_columns = first.n_logcount_columns
        self.chunk_rows = first.chunk_rows
        self._regions = self._same_stored_regions()

    def _same_stored_regions(self) -> Optional[Regions]:
        """The first member's stored windows, after checking every member that stores windows stores these."""
        stored = [(m, m.regions()) for m in self.members]
        with_windows = [(m, r) for m, r in stored if r is not None]
        for member, regions in with_windows[1:]:
            base, table = with_windows[0]
            row = _first_difference(table, regions)
            if row is not None:
                here = regions.label(row) if row < len(regions) else "absent"
                there = table.label(row) if row < len(table) else "none"
                raise InputError(f"{member.path}: region {row + 1} is {here} but {base.path} has {there} there; an "
                                 "ensemble averages predictions of the same regions, in the same order")
        return stored[0][1]

    def describe(self) -> dict:
        described = [m.describe() for m in self.members]
        kinds = sorted({str(d.get("profile_kind")) for d in described if d.get("profile_kind")})
        layouts = sorted({str(d.get("layout")) for d in described})
        out = {"path": self.path, "layout": f"ensemble of {len(self.members)} predictions ({', '.join(layouts)})",
               "profile_kind": f"mean of the members' probabilities (members hold {', '.join(kinds) or 'counts'})",
               "profile": PROFILE_RULE, "logcounts": f"{self.logcounts_rule}: {LOGCOUNT_RULES[self.logcounts_rule]}",
               "n_regions": self.n, "n_tracks": self.n_tracks, "length": self.length,
               "logcounts_per": described[0].get("logcounts_per"), "members": described}
        for key in ("window_center", "pseudocount", "overlapping_windows"):  # reading conventions shared by all
            if key in described[0]:
                out[key] = described[0][key]
        magnitudes = [p for d in described for p in d.get("read_as_magnitudes", [])]
        if magnitudes:
            out["read_as_magnitudes"] = magnitudes
        return out

    def regions(self) -> Optional[Regions]:
        return self._regions

    def stored_datasets(self) -> list:
        return [d for m in self.members for d in m.stored_datasets()]

    def will_read(self, start: int, stop: int, fork=None, read_ahead=None) -> None:
        for member in self.members:
            member.will_read(start, stop, fork, read_ahead)

    def read(self, i: int, j: int):
        """The ensemble's logits ``(j-i, S, L)`` and log counts ``(j-i, T)`` (float64) of regions ``i..j``."""
        logcounts = []

        def each_member():  # one member's logits at a time, the next ones read meanwhile (``members_read``)
            for logits, counts in members_read(self.members, i, j):
                logcounts.append(counts)
                yield logits

        def again(rows: np.ndarray) -> list:  # (rare: rows whose mean probabilities underflow)
            return [member.read(i, j)[0][rows] for member in self.members]

        logits = ensemble_profile(each_member(), joint=self.n_logcount_columns == 1, again=again,
                                  threads=min(MAX_ENSEMBLE_THREADS, allotted_cpus()))
        return logits, ensemble_logcounts(logcounts, self.logcounts_rule)

    def check_batch(self, logits, observed, regions, first_row: int) -> None:
        """Every member's own checks, on the ensemble's profile (what is scored)."""
        for member in self.members:
            member.check_batch(logits, observed, regions, first_row)

    def bigwig_readers(self) -> list:
        return [reader for member in self.members for reader in member.bigwig_readers()]

    def close(self):
        for member in self.members:
            member.close()
