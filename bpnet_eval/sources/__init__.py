"""Readers of every input format, behind two interfaces (``base.PredictionSource``, ``base.TruthSource``).

``open_predictions`` and ``open_truth`` are the one place where the format of an input is decided:

- predictions: two or three ``.npz`` files (bpnet-lite 0.9: profile, log counts, index mask), counts-scale bigWigs (one per track), a
  ``(logits, logcounts)`` pair of arrays, or an HDF5 file in one of the peers' layouts
  (``predictions.detect_layout``);
- truth: one bigWig per track (read over the regions), one HDF5 file, or an array ``(N, S, L)``.

A new prediction layout goes into ``predictions.detect_layout`` (an HDF5 layout) or a new module
here implementing ``PredictionSource``, chosen in ``open_predictions``.
"""

import os
from typing import Optional

import numpy as np

from ..errors import BpnetEvalError, UsageError
from ..input_files import reading
from ..regions import Regions
from .base import PredictionSource, ReadPlan, TruthSource
from .bigwig import BigWigReader
from .ensemble import EnsemblePredictions
from .npz import NpzPredictions, npz_prediction_paths
from .predicted_bigwig import BigWigPredictions, bigwig_prediction_paths
from .predictions import ArrayPredictions, HDF5Predictions
from .tracks import HDF5_SUFFIXES, ArrayTruth, open_truth_files

__all__ = ["PredictionSource", "TruthSource", "ReadPlan", "open_predictions", "open_truth", "unreadable_truth_bigwigs",
           "input_conventions"]


OPEN_FIX = "check that the file is complete and in a supported format (docs/formats.md)"


def _named_files(given) -> list:
    """The file names in an input argument (a path, comma-separated paths or a list of paths), for messages."""
    if isinstance(given, (str, os.PathLike)):
        return [p.strip() for p in str(given).split(",")]
    if isinstance(given, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in given):
        return [str(p) for p in given]
    return []


def open_predictions(predictions, regions=None, *, ensemble=(), ensemble_logcounts: str = "mean-log",
                     **options) -> PredictionSource:
    """The prediction source for ``predictions`` (see the module docstring for the formats), or with
    ``ensemble`` (more predictions of the same regions, each in any format) the ensemble of it and them
    (``ensemble.EnsemblePredictions``, log counts by ``ensemble_logcounts``); ``options``: the keywords of
    ``open_one_prediction``. An unexpected error while the files are opened names them (InputError)."""
    if not ensemble:
        return open_one_prediction(predictions, regions, **options)
    members = []
    try:
        for member in (predictions, *ensemble):
            members.append(open_one_prediction(member, regions, **options))
        return EnsemblePredictions(members, ensemble_logcounts)
    except BaseException:
        for member in members:
            member.close()
        raise


def open_one_prediction(predictions, regions=None, *, logits_dataset: Optional[str] = None,
                        logcounts_dataset: Optional[str] = None, profile_kind: Optional[str] = None,
                        head: Optional[int] = None, pred_pseudocount: float = 0.0, pred_logcounts: str = "log",
                        pred_logcounts_per: str = "region", regions_format: str = "auto", window_center: Optional[str] = None, chroms=None,
                        length: Optional[int] = None, allow_external_links: bool = False) -> PredictionSource:
    """The prediction source of one model's ``predictions``; an unexpected error while the files are opened
    names them (InputError)."""
    with reading(_named_files(predictions), "the predictions", OPEN_FIX):
        npz = npz_prediction_paths(predictions)
        if npz is not None:  # bpnet-lite 0.9: profile logits and log counts in two .npz files
            return NpzPredictions(npz)
        bigwigs = bigwig_prediction_paths(predictions)
        if bigwigs is not None:  # counts-scale bigWigs, one per track, read over the regions
            return BigWigPredictions(bigwigs, regions, pred_pseudocount, pred_logcounts, length,
                                     regions_format=regions_format, window_center=window_center, chroms=chroms,
                                     logcounts_per=pred_logcounts_per)
        if pred_pseudocount or pred_logcounts != "log" or pred_logcounts_per != "region":
            raise UsageError("--pred-pseudocount, --pred-logcounts and --pred-logcounts-per apply to bigWig "
                             "predictions only; "
                             "HDF5 predictions carry their own log counts")
        if isinstance(predictions, (tuple, list)) and len(predictions) == 2:
            return ArrayPredictions(*predictions)
        options = {"allow_external_links": True} if allow_external_links else {}
        return HDF5Predictions(predictions, logits_dataset, logcounts_dataset, profile_kind, head, **options)


def open_truth(truth, regions: Optional[Regions], dataset: Optional[str] = None,
               allow_external_links: bool = False) -> TruthSource:
    """The truth source for ``truth``: a path, a list of paths, or an array ``(N, L)`` / ``(N, S, L)``; an
    unexpected error while the files are opened names them (InputError)."""
    if isinstance(truth, (str, os.PathLike)):
        truth = [truth]
    elif hasattr(truth, "shape"):  # a numpy array or a torch tensor
        return ArrayTruth(np.asarray(truth))
    paths = list(truth)
    with reading(_named_files(paths), "the observed counts", OPEN_FIX):
        return open_truth_files(paths, regions, dataset, allow_external_links)


def unreadable_truth_bigwigs(truth) -> list:
    """The errors of every bigWig a TRUTH argument names that cannot be opened (for ``check``'s full list)."""
    paths = [truth] if isinstance(truth, (str, os.PathLike)) else list(truth) if isinstance(truth, (list, tuple)) else []
    errors = []
    for path in paths:
        if not str(path).lower().endswith(HDF5_SUFFIXES):
            try:
                BigWigReader(path).close()
            except BpnetEvalError as err:
                errors.append(err)
    return errors


def input_conventions(predictions: dict, truth: dict, regions: str) -> dict:
    """Every reading convention a run used, by name, for ``summary.json`` settings, from the sources' ``describe()``
    and the regions' source: the layout and what its profile holds, where the predicted log counts come from,
    how the windows were built, and which files were read as magnitudes."""
    conventions = {"predictions_layout": predictions.get("layout"), "predicted_profile": predictions.get("profile_kind"),
                   "predicted_logcounts": predictions.get("logcounts") if isinstance(predictions.get("logcounts"), str)
                   else "stored, one per " + str(predictions.get("logcounts_per", "region")),
                   "windows": regions,
                   "observed": str(truth.get("kind", "")) + (f" [{truth['dataset']}]" if truth.get("dataset") else "")}
    for key in ("window_center", "pseudocount"):
        if key in predictions:
            conventions[key] = predictions[key]
    negated = predictions.get("read_as_magnitudes", []) + truth.get("read_as_magnitudes", [])
    if negated:
        conventions["read_as_magnitudes"] = negated
    if predictions.get("overlapping_windows"):
        conventions["overlapping_windows"] = predictions["overlapping_windows"]
    return conventions
