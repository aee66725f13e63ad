"""The streaming loop: sources → batches → per-region metrics → summary.

``score`` is the Python API behind ``bpnet-eval score``; it takes paths or arrays and
returns per-region values and the summary.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from . import __version__
from .errors import InputError, UsageError
from .losses import MNLLLoss, count_target, mixture_loss_per_region
from .regions import Regions, read_region_file
from .sources.predictions import ArrayPredictions, HDF5Predictions
from .sources.tracks import ArrayTruth, open_truth
from .summary import summarize

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class ScoreResult:
    """Per-region values (``columns``, in input order), the regions and the summary."""

    regions: Regions
    columns: dict
    summary: dict
    track_names: list = field(default_factory=list)
    # ``read_rows(rows) -> (logits, logcounts, observed)``: a few regions read again from the sources.
    read_rows: Optional[Callable] = None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the GPU when torch sees one, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


def default_track_names(n_tracks: int) -> list:
    """``plus, minus`` for two tracks (stranded data), else ``track0, track1, ...``."""
    return ["plus", "minus"] if n_tracks == 2 else [f"track{s}" for s in range(n_tracks)]


def per_track_mnll(logits, observed):
    """Per track: ``MNLL(log_softmax over positions of z[s], k[s])`` (bpnet-lite evaluation)."""
    return MNLLLoss(torch.log_softmax(logits, dim=-1), observed)


def compute_batch(logits, logcounts, observed, count_loss_weight: float, track_names: Sequence[str]) -> dict:
    """Per-region columns of one batch, as numpy arrays (float64), in batch order."""
    profile_mnll, count_loss, mixture = mixture_loss_per_region(observed, logits, logcounts, count_loss_weight)
    columns = {"observed_counts": observed.sum(dim=(-2, -1))}
    if logcounts.shape[-1] == 1:
        columns["predicted_logcounts"] = logcounts[:, 0]
    else:
        target = count_target(observed, logcounts.shape[-1])
        for s, name in enumerate(track_names):
            columns[f"observed_counts_{name}"] = target[:, s]
            columns[f"predicted_logcounts_{name}"] = logcounts[:, s]
    columns.update(profile_mnll=profile_mnll, count_log1p_mse=count_loss, mixture_loss=mixture)
    if len(track_names) > 1:
        for s, value in enumerate(per_track_mnll(logits, observed).unbind(-1)):
            columns[f"profile_mnll_{track_names[s]}"] = value
    return {name: value.detach().to("cpu", torch.float64).numpy() for name, value in columns.items()}


def _open_predictions(predictions, **options):
    if isinstance(predictions, (tuple, list)) and len(predictions) == 2:
        return ArrayPredictions(*predictions)
    return HDF5Predictions(predictions, **options)


def _open_truth(truth, regions, dataset):
    if isinstance(truth, np.ndarray) or torch.is_tensor(truth):
        return ArrayTruth(np.asarray(truth))
    paths = [truth] if isinstance(truth, str) or hasattr(truth, "__fspath__") else list(truth)
    return open_truth(paths, regions, dataset)


def _resolve_regions(preds, regions) -> Optional[Regions]:
    if regions is None:
        return preds.regions()
    if isinstance(regions, Regions):
        return regions
    return read_region_file(regions, preds.length)


def check_sources(preds, truth, regions: Optional[Regions], truth_label: str) -> None:
    """Raise unless the predictions, the observed tracks and the regions describe the same windows."""
    if truth.n_tracks != preds.n_tracks:
        raise UsageError(f"{truth_label}: {truth.n_tracks} observed track(s) for {preds.n_tracks} predicted "
                         f"track(s) in {preds.path}; give one bigWig per predicted track, in track order "
                         "(stranded: plus, then minus)")
    n_truth = getattr(truth, "n", None)
    if n_truth is not None and n_truth != preds.n:
        raise InputError(f"{truth_label}: {n_truth} observed regions but {preds.path} holds {preds.n} predictions; "
                         "the observed counts must be in prediction order, one row per prediction")
    if getattr(truth, "length", preds.length) != preds.length:
        raise InputError(f"{truth_label}: observed profiles have L = {truth.length} but the predictions have "
                         f"L = {preds.length}; score observed and predicted windows of the same width")
    if regions is not None:
        if len(regions) != preds.n:
            raise InputError(f"{regions.source or 'regions'}: {len(regions)} regions for {preds.n} predictions in "
                             f"{preds.path}; give one region per prediction, in prediction order")
        regions.check_width(preds.length, regions.source or "regions")
    truth.validate()


def iter_batches(preds, truth, batch_size: int):
    """``(i, j, (logits, logcounts), observed)`` for consecutive batches; the next batch is read
    in a background thread while the caller computes the current one."""
    bounds = [(i, min(i + batch_size, preds.n)) for i in range(0, preds.n, batch_size)]

    def read(bound):
        i, j = bound
        return i, j, preds.read(i, j), truth.read(i, j)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpnet-eval-read") as pool:
        pending = pool.submit(read, bounds[0]) if bounds else None
        for k in range(len(bounds)):
            batch = pending.result()
            pending = pool.submit(read, bounds[k + 1]) if k + 1 < len(bounds) else None
            yield batch


def read_rows(predictions, truth, regions, rows: Sequence[int], truth_dataset: Optional[str] = None,
              **prediction_options):
    """Logits ``(k, S, L)``, log counts ``(k, T)`` and observed counts ``(k, S, L)`` of the regions at
    ``rows`` only, read again from the sources (for figures; never the whole N x S x L)."""
    preds = _open_predictions(predictions, **prediction_options)
    table = _resolve_regions(preds, regions)
    truth_source = _open_truth(truth, table, truth_dataset)
    try:
        parts = [(preds.read(int(r), int(r) + 1), truth_source.read(int(r), int(r) + 1)) for r in rows]
    finally:
        preds.close()
        truth_source.close()
    return (np.concatenate([p[0][0] for p in parts]), np.concatenate([p[0][1] for p in parts]),
            np.concatenate([p[1] for p in parts]))


def score(predictions, truth, regions=None, *, count_loss_weight: float = 1.0, device: str = "auto",
          batch_size: int = 1024, dtype: str = "float64", track_names: Optional[Sequence[str]] = None,
          logits_dataset: Optional[str] = None, logcounts_dataset: Optional[str] = None,
          profile_kind: Optional[str] = None, head: Optional[int] = None, truth_dataset: Optional[str] = None,
          progress: Optional[Callable[[int, int], None]] = None) -> ScoreResult:
    """Score predictions against observed counts, region by region.

    Parameters
    ----------
    predictions : str or (logits, logcounts)
        An HDF5 file in a known layout, or arrays: logits ``(N, L)``/``(N, S, L)`` and log counts
        ``(N,)``, ``(N, 1)`` or ``(N, S)``.
    truth : str, list of str, or array
        One bigWig per predicted track, one HDF5 file of counts, or an array ``(N, S, L)``.
    regions : str or Regions, optional
        BED / narrowPeak file or a Regions table; default: the coordinates stored with the predictions.
    count_loss_weight : float
        Weight of the count term in the mixture loss.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    batch_size : int
        Regions per batch.
    dtype : {"float64", "float32"}
        Precision of the computation.
    progress : callable(done, total), optional
        Called after every batch.

    Returns
    -------
    result : ScoreResult
        ``columns`` maps each per-region column to a float64 array in input order; ``summary`` is
        the dictionary written to ``summary.json``.
    """
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not '{dtype}'")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    torch_device = resolve_device(device)
    preds = _open_predictions(predictions, logits_dataset=logits_dataset, logcounts_dataset=logcounts_dataset,
                              profile_kind=profile_kind, head=head)
    table = _resolve_regions(preds, regions)
    truth_source = _open_truth(truth, table, truth_dataset)
    try:
        truth_label = ", ".join(truth_source.describe()["paths"]) or "observed counts"
        check_sources(preds, truth_source, table, truth_label)
        names = list(track_names) if track_names else default_track_names(preds.n_tracks)
        if len(names) != preds.n_tracks:
            raise UsageError(f"--track-names gives {len(names)} name(s) for {preds.n_tracks} track(s)")
        chunks = []
        as_tensor = lambda a: torch.as_tensor(a).to(torch_device, DTYPES[dtype])  # noqa: E731
        with torch.inference_mode():
            for i, j, (logits, logcounts), observed in iter_batches(preds, truth_source, batch_size):
                chunks.append(compute_batch(as_tensor(logits), as_tensor(logcounts), as_tensor(observed),
                                            count_loss_weight, names))
                if progress:
                    progress(j, preds.n)
        columns = {name: np.concatenate([c[name] for c in chunks]) if chunks else np.zeros(0)
                   for name in (chunks[0] if chunks else {})}
        if table is None:
            table = Regions(np.array(["."] * preds.n, dtype=object), np.zeros(preds.n), np.zeros(preds.n),
                            None, "none (row numbers)")
        settings = {"count_loss_weight": float(count_loss_weight), "device": str(torch_device), "dtype": dtype,
                    "batch_size": batch_size, "track_names": names, "bpnet_eval_version": __version__}
        inputs = {"predictions": preds.describe(), "truth": truth_source.describe(), "regions": table.source}
        summary = summarize(columns, table.peak, settings, inputs)
        reader = partial(read_rows, predictions, truth, regions, truth_dataset=truth_dataset,
                         logits_dataset=logits_dataset, logcounts_dataset=logcounts_dataset,
                         profile_kind=profile_kind, head=head)
        return ScoreResult(table, columns, summary, names, reader)
    finally:
        preds.close()
        truth_source.close()
