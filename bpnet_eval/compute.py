"""Per-batch computation on a device: numpy batches → per-region columns (torch).

``BatchComputer`` turns one batch of logits, log counts and observed counts into the
per-region columns of the report, on the CPU or a GPU, in float64 or float32.
"""

import math
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .environment import THREAD_VARIABLES, allotted_cpus
from .errors import BpnetEvalError, UsageError
from .losses import SHIFT_ABOVE, mnll_per_region, track_logsumexp
from .metrics.profile import chunk_rows, profile_metrics
from .metrics.labels import auprc_region_mask, binned_labels_scores_by_size
from .metrics.names import BIN_SIZES
from .metrics.pooled import PooledAuprc, score_label_keys
from .presets import MetricPlan
from .seed import CountTerms, LogitTerms, count_terms, logit_terms, maybe_undefined, seed_columns

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the GPU when torch sees one, else the CPU (one line on stderr when this torch is a CUDA build,
    so a GPU was expected); ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if name == "auto":
        with warnings.catch_warnings(record=True) as caught:  # torch says why CUDA failed in a warning
            warnings.simplefilter("always")
            usable = torch.cuda.is_available()
        if not usable and torch.version.cuda:
            why = next((str(w.message).strip().split(". ")[0] for w in caught),
                       "torch sees no GPU; in a container pass one: docker run --gpus all, apptainer run --nv")
            print(f"bpnet-eval: note: --device auto: this torch is a CUDA {torch.version.cuda} build but no GPU is "
                  f"usable ({why.rstrip('.')}); scoring on the CPU", file=sys.stderr, flush=True)
        return torch.device("cuda" if usable else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device '{name}' is not a device; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: torch sees no GPU here; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: torch sees {torch.cuda.device_count()} GPU(s); use cuda:0..")
    elif device.type != "cpu":
        raise UsageError(f"--device '{name}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


def metric_columns(logits, observed, compute_dtype, track_names: Sequence[str], plan: Optional[MetricPlan] = None,
                   first_row: int = 0, logcounts=None, piece_rows: Optional[int] = None) -> dict:
    """The profile metrics of ``plan`` for one batch (tensors; NaN where a metric is undefined; ``piece_rows`` regions
    computed at a time, default cache-sized), and the per-track counts (``track_count_columns``) and basepairmodels'
    metrics (``basepairmodels_columns``) where the plan asks for them."""
    columns = track_count_columns(logits, observed, compute_dtype, track_names) if plan and plan.track_counts else {}
    if plan is not None and plan.basepairmodels and logcounts is not None:  # (numpy: cache-sized pieces are faster)
        step = chunk_rows(logits.shape)
        columns.update(joined_columns([basepairmodels_columns(logits[a:a + step], logcounts[a:a + step],
                                                              observed[a:a + step], track_names)
                                       for a in range(0, logits.shape[0], step)]))
    if plan is None or not plan.profile_names:
        return columns
    rows = torch.arange(first_row, first_row + logits.shape[0], device=logits.device)
    columns.update(profile_metrics(narrowed(logits, compute_dtype), observed.to(compute_dtype),
                                   names=plan.profile_names, track_names=track_names, rows=rows,
                                   piece_rows=piece_rows, **plan.profile_options))
    return columns


def joined_columns(parts: list) -> dict:
    """The columns of consecutive pieces of a batch (each ``{name: tensor}``, the same names), joined in order."""
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]} if parts else {}


def basepairmodels_columns(logits, logcounts, observed, track_names: Sequence[str]) -> dict:
    """Per track ``s``: ``bpm_<metric>_<s>``, basepairmodels' per-region metrics (``metrics.basepairmodels``) of the
    track's softmax, its predicted log count (the region's one where there is one per region) and its counts, in
    float64 numpy as basepairmodels computes them."""
    from .metrics.basepairmodels import basepairmodels_metrics

    probs = torch.softmax(logits.to(torch.float64), dim=-1).cpu().numpy()
    counts = logcounts.to(torch.float64).cpu().numpy()
    observed = observed.to(torch.float64).cpu().numpy()
    n, n_tracks, length = observed.shape
    counts = np.broadcast_to(counts if counts.shape[1] > 1 else counts[:, :1], (n, n_tracks))
    # every track's profiles in one call, track after track (each profile's metrics are its own): fewer calls
    values = basepairmodels_metrics(probs.transpose(1, 0, 2).reshape(-1, length), counts.T.reshape(-1),
                                    observed.transpose(1, 0, 2).reshape(-1, length))
    return {f"bpm_{metric}_{name}": torch.from_numpy(value[s * n:(s + 1) * n])
            for s, name in enumerate(track_names) for metric, value in values.items()}


def track_count_columns(logits, observed, compute_dtype, track_names: Sequence[str]) -> dict:
    """Per track ``s``: the observed total ``observed_tracktotal_<s> = sum_i k_si`` and the log of the predicted
    profile's share of the region, ``predicted_trackshare_<s> = logsumexp_i z_si - logsumexp_{t,i} z_ti``
    (so ``e^(c + share_s)`` is track ``s``'s part of a predicted total ``e^c``)."""
    totals = observed.to(compute_dtype).sum(dim=-1)
    share = torch.log_softmax(track_logsumexp(logits, compute_dtype), dim=-1)
    columns = {}
    for s, name in enumerate(track_names):
        columns[f"observed_tracktotal_{name}"] = totals[:, s]
        columns[f"predicted_trackshare_{name}"] = share[:, s]
    return columns


def peer_rounded(seed: dict, plan: Optional[MetricPlan], track_names: Sequence[str]) -> dict:
    """``seed`` with the per-track MNLL rounded to float32 where the plan asks for float32 profile results
    (bpnet-lite stores its per-strand ``profile_mnll`` in a float32 tensor whatever the input dtype); the
    joint seed losses keep the compute dtype."""
    if plan is None or not plan.profile_options.get("float32_results") or len(track_names) < 2:
        return seed
    per_track = {f"profile_mnll_{name}" for name in track_names}
    return {name: value.to(torch.float32) if name in per_track else value for name, value in seed.items()}


def narrowed(logits, dtype):
    """``logits`` in ``dtype``; where that narrows them (float64 stored, float32 computed), a region whose largest
    logit is beyond ``SHIFT_ABOVE`` in magnitude is first shifted by it, in float64 (every softmax of the region
    is unchanged, and its digits survive: 1e12 + z in float32 would keep none of z)."""
    if logits.dtype != torch.float64 or dtype == torch.float64:
        return logits.to(dtype)
    top = logits.amax(dim=(1, 2), keepdim=True)
    large = top.abs() > SHIFT_ABOVE
    if not bool(large.any()):
        return logits.to(dtype)
    return (logits - torch.where(large, top, torch.zeros_like(top))).to(dtype)


def as_numpy(columns: dict) -> dict:
    """Tensor columns as float64 numpy arrays on the CPU."""
    return {name: value.detach().to("cpu", torch.float64).numpy() for name, value in columns.items()}


def compute_batch(logits, logcounts, observed, count_loss_weight: float, track_names: Sequence[str],
                  plan: Optional[MetricPlan] = None, first_row: int = 0) -> dict:
    """Per-region columns of one batch, as numpy arrays (float64), in batch order: the seed losses, the
    per-track MNLL, then the profile metrics of ``plan`` (``first_row``: the global row of the batch's first
    region, which keys the shuffled baselines). The computation runs in ``logcounts``' dtype; ``logits`` and
    ``observed`` may come as stored (float32)."""
    count_target = plan.count_target if plan is not None else "log1p"
    columns = peer_rounded(seed_columns(mnll_per_region(logits, observed, logcounts.dtype), logcounts,
                                        count_loss_weight, track_names, count_target), plan, track_names)
    columns.update(metric_columns(logits, observed, logcounts.dtype, track_names, plan, first_row, logcounts))
    return as_numpy(columns)


class TensorPooledAuprc(PooledAuprc):
    """``PooledAuprc`` fed tensors: on the CPU in float64 it takes their numpy views (so the keys are those of a run
    without torch: ``metrics.pooled.region_keys``); elsewhere, or with ``numpy_on_cpu`` False, torch computes them
    on their device in the run's dtype."""

    numpy_on_cpu = True

    def update(self, observed, logits, keep: Optional[np.ndarray] = None, map_pieces: Callable = map,
               dtype=None) -> None:
        """Add one batch: observed counts and logits ``(B, S, L)`` (probabilities per strand), as stored; ``keep``:
        the rows scored (default all); ``map_pieces``: how the keys of its pieces are computed (``map``, or a thread
        pool's ``map``: pieces side by side), added in piece order either way; ``dtype``: of the computation (default
        the logits'), each piece converted on its own (``narrowed``), not the whole batch."""
        dtype = logits.dtype if dtype is None else dtype
        if self.numpy_on_cpu and observed.device.type == "cpu" and dtype == torch.float64:
            super().update(observed.numpy(), logits.numpy(), keep, map_pieces)
            return
        step = chunk_rows(observed.shape, observed.device)  # cache-sized pieces on the CPU: small temporaries
        masks = map_pieces(lambda first: auprc_region_mask(observed[first:first + step].to(dtype)),
                           range(0, len(observed), step))
        mask = torch.cat(list(masks)) if len(observed) else torch.zeros(0, dtype=torch.bool, device=observed.device)
        if keep is not None:
            mask = mask & torch.as_tensor(keep, device=mask.device)
        rows = torch.nonzero(mask).flatten()

        def piece_keys(first):
            piece = rows[first:first + step]
            probs = torch.softmax(narrowed(logits[piece], dtype), dim=-1)
            binned = binned_labels_scores_by_size(observed[piece].to(dtype), probs, BIN_SIZES)
            return {binsize: score_label_keys(labels.flatten(), scores.flatten())
                    for binsize, (labels, scores) in binned.items()}

        for keys_by_size in map_pieces(piece_keys, range(0, len(rows), step)):
            self.add(keys_by_size)


class BatchComputer:
    """Numpy batches → per-region columns (``compute_batch``) on ``device`` in ``dtype``.

    ``prepare`` turns a batch's numpy arrays into tensors; ``score``'s reading thread calls it, so on a
    GPU the host copy is pinned there and the transfer (float32, half the bytes) overlaps the compute.
    """

    def __init__(self, count_loss_weight: float = 1.0, track_names: Sequence[str] = ("plus", "minus"),
                 device="cpu", dtype: str = "float64", plan: Optional[MetricPlan] = None):
        self.plan = plan
        self.pooled_auprc = TensorPooledAuprc() if plan is not None and plan.pooled_auprc else None
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = DTYPES[dtype]
        self.count_loss_weight = count_loss_weight
        self.track_names = list(track_names)
        # How pieces of a batch are mapped to their metric columns: ``map`` (one after another), or a thread pool's
        # ``map`` (``piece_threads``: side by side on the CPU cores, ``piece_threads_count`` of them).
        self.map_pieces: Callable = map
        self.piece_threads_count = 1
        # On the CPU in float64 numpy computes the seed losses (``seed.mnll_per_region``), as ``SeedComputer`` does:
        # their terms of the logits alone and of the counts may then be computed where the batch is read.
        numpy_seed = self.device.type == "cpu" and self.dtype == torch.float64
        self.logit_terms = logit_terms if numpy_seed else None
        self.count_terms = count_terms if numpy_seed else None

    def prepare(self, *arrays):
        """CPU: tensors sharing the arrays' memory. GPU: pinned host copies as stored (float32 crosses the
        bus, then is converted on the device), so ``__call__``'s non-blocking transfer overlaps."""
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        if self.device.type == "cuda":
            return tuple(t.pin_memory() for t in tensors)
        return tensors

    def __call__(self, logits, logcounts, observed, first_row: int = 0, screen: Optional[Callable] = None,
                 terms: Optional[LogitTerms] = None, counted: Optional[CountTerms] = None) -> dict:
        """Per-region columns (float64 numpy) of one batch given as arrays or prepared tensors.

        ``screen(columns, always_defined)``, when given, sees the columns (and the names of those defined for
        every region with finite inputs) before the pooled auPRC takes the batch, and returns the rows not to
        score (a boolean array: where a value overflowed); the pooled auPRC leaves those rows out. ``terms``,
        ``counted``: ``logit_terms(logits)``, ``count_terms(observed)`` when already computed (where
        ``self.logit_terms`` is not None). A GPU out of memory is a ``BpnetEvalError`` naming the batch and the
        fix."""
        try:
            return self._columns(logits, logcounts, observed, first_row, screen, terms, counted)
        except torch.cuda.OutOfMemoryError as err:
            what = ". ".join(str(err).split(". ")[:2]).strip().rstrip(".")  # "CUDA out of memory. Tried to allocate .."
            raise BpnetEvalError(
                f"the GPU ({self.device}) ran out of memory scoring regions {first_row + 1}..{first_row + len(logits)} "
                f"(a batch of {tuple(logits.shape)} {str(self.dtype).replace('torch.', '')}; {what}); lower "
                "--batch-size, or use --device cpu") from err

    def _columns(self, logits, logcounts, observed, first_row: int, screen: Optional[Callable], terms=None,
                 counted=None) -> dict:
        """``__call__``'s columns."""
        if not torch.is_tensor(logits):
            logits, logcounts, observed = self.prepare(logits, logcounts, observed)
        # Logits and counts keep their stored dtype (float32 holds counts exactly): the MNLL converts the
        # logits chunk by chunk and reads the counts sparsely; ``logcounts`` carries the compute dtype.
        logits, observed = (t.to(self.device, non_blocking=True) for t in (logits, observed))
        logcounts = logcounts.to(self.device, non_blocking=True).to(self.dtype)
        count_target = self.plan.count_target if self.plan is not None else "log1p"
        metrics = self.metric_columns(logits, observed, logcounts, first_row)  # the pieces start, beside the seed
        mnll = mnll_per_region(logits, observed, self.dtype, terms, counted)
        if self.logit_terms is not None:  # float64 on the CPU: numpy's columns (its log1p), as a run without torch
            seed = {name: torch.as_tensor(value) for name, value in seed_columns(
                tuple(part.numpy() for part in mnll), logcounts.numpy(), self.count_loss_weight, self.track_names,
                count_target).items()}
        else:
            seed = seed_columns(mnll, logcounts, self.count_loss_weight, self.track_names, count_target)
        seed = peer_rounded(seed, self.plan, self.track_names)
        columns = as_numpy({**seed, **metrics()})
        dropped = screen(columns, frozenset(seed) - maybe_undefined(count_target)) if screen is not None else None
        if self.pooled_auprc is not None:
            keep = None if dropped is None or not dropped.any() else ~dropped
            self.pooled_auprc.update(observed, logits, keep, self.map_pieces, self.dtype)
        return columns

    def metric_columns(self, logits, observed, logcounts, first_row: int) -> Callable[[], dict]:
        """A function returning ``metric_columns`` of the batch: computed whole when it is called with ``map``, else
        piece by piece (``chunk_rows``, the pieces ``profile_metrics`` takes itself) through ``map_pieces``, whose
        thread pool starts them now (the caller computes the seed losses meanwhile), joined in order when it is
        called. Every column of a region is computed from that region's rows alone, so the numbers are the same
        either way (tested)."""
        def columns_of(rows: slice, piece_rows: Optional[int] = None) -> dict:
            return metric_columns(logits[rows], observed[rows], self.dtype, self.track_names, self.plan,
                                  first_row + rows.start, logcounts[rows], piece_rows)

        n = logits.shape[0]
        if self.map_pieces is map or not self.plan_has_pieces():
            return lambda: columns_of(slice(0, n))
        step = threaded_piece_rows(logits.shape, self.piece_threads_count)  # each piece computed whole
        pieces = self.map_pieces(lambda rows: columns_of(rows, step),
                                 [slice(a, min(a + step, n)) for a in range(0, n, step)])

        return lambda: joined_columns(list(pieces))

    def plan_has_pieces(self) -> bool:
        """Whether the plan computes more than the seed losses (the work ``metric_columns`` can split)."""
        plan = self.plan
        return plan is not None and bool(plan.profile_names or plan.basepairmodels or plan.track_counts)


# Threads computing the pieces of a batch at most: each holds its piece's temporaries (~35 MB more peak memory per
# thread a 64-region piece of 2 x 1000 profiles), and the Python between torch's and numpy's calls runs one thread at
# a time.
MAX_PIECE_THREADS = 8
# Values a piece handed to a piece thread holds at most (256 regions of 2 x 1000), each computed whole: fewer, larger
# pieces than one thread's cache-sized ones (``chunk_rows``). With 2 threads, `--metrics all` on 100k chip regions ran
# in 39.3 s instead of 44.2 s (medians of 3, interleaved; the same reports), the run's memory 0.2-0.3 GB larger (chip
# 0.92 GB, deep 1.29 GB); alone, one thread computes cache-sized pieces ~5% faster. At least two pieces a thread, so
# that many threads all work.
THREADED_PIECE_VALUES = 1 << 19


def threaded_piece_rows(shape, threads: int) -> int:
    """Regions of a ``(B, S, L)`` batch per piece for ``threads`` piece threads: at most ``THREADED_PIECE_VALUES``
    values, at least cache-sized (``chunk_rows``), and where the batch allows, two pieces a thread or more."""
    cached, values = chunk_rows(shape), max(1, math.prod(shape[1:]))
    return max(cached, min(THREADED_PIECE_VALUES // values, -(-shape[0] // (2 * max(1, threads)))))


def warm_up_kernels() -> None:
    """torch single-threaded in this thread, and its float64 ``exp``, ``log`` and ``sqrt`` used once: on the CPU they
    are MKL's vector math functions, which set up their modes and dispatch on first use. Done by every piece thread
    before any piece is computed (``piece_threads``), so that no piece meets that setup. Without it, in 1 of 40 fresh
    ``--metrics all`` runs (3,000 cage regions) one thread's first piece came out with its joint-view columns that
    depend on ``exp`` up to 3e-9 relative off (the cross-entropy and Spearman the same); with it, 160 of 160 gave the
    same bytes."""
    torch.set_num_threads(1)
    x = torch.full((64,), 2.0, dtype=torch.float64)
    torch.sqrt(torch.log(torch.exp(x)))


def start_every_thread(pool: ThreadPoolExecutor, threads: int) -> None:
    """Start all ``threads`` threads of ``pool`` (each runs the pool's initializer) before any other work is given to
    it: one task per thread, each waiting for all to run (a pool starts a thread per task while none is idle)."""
    together = threading.Barrier(threads)
    for started in [pool.submit(together.wait, 60) for _ in range(threads)]:
        started.result()


@contextmanager
def piece_threads(computer: BatchComputer, threads: int):
    """While inside, ``computer`` computes the pieces of each batch (``BatchComputer.metric_columns``, the pooled
    auPRC's keys) in a pool of ``threads`` threads (at most ``MAX_PIECE_THREADS``), each running torch
    single-threaded: torch and numpy release the GIL for their work, so on a CPU the metrics beyond the seed losses
    use the cores the run has. Nothing changes with one thread, off the CPU, or for a plan of the seed losses alone;
    torch's threads and the computer's ``map`` are restored afterwards (the pool is shut down: the report forks
    processes later)."""
    threads = min(threads, MAX_PIECE_THREADS)
    if threads <= 1 or computer.device.type != "cpu" or not (computer.plan_has_pieces() or computer.pooled_auprc is not None):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    warm_up_kernels()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="bpnet-eval-piece", initializer=warm_up_kernels)
    computer.map_pieces, computer.piece_threads_count = pool.map, threads
    try:
        start_every_thread(pool, threads)
        yield
    finally:
        computer.map_pieces, computer.piece_threads_count = map, 1
        pool.shutdown(wait=True, cancel_futures=True)  # an error or Ctrl-C: the pieces not started are dropped
        torch.set_num_threads(before)


@contextmanager
def compute_threads(device: torch.device, readers: int = 1, threads: Optional[int] = None):
    """torch's threads while computing: ``threads`` (default: as set), and on the CPU ``readers`` cores left
    to the reading thread and processes: torch's threads spin-wait, and sharing every core with the readers
    slows both. Restored afterwards; OMP/MKL_NUM_THREADS, when set, are respected as given."""
    before = torch.get_num_threads()
    cores = allotted_cpus()
    explicit = any(os.environ.get(name, "").strip() for name in THREAD_VARIABLES)
    wanted = before if threads is None or explicit else threads
    if device.type == "cpu" and not explicit and wanted >= cores > 1:
        wanted = max(1, cores - readers)
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
