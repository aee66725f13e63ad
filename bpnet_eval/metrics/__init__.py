"""The field's metrics as pure torch functions (vectorised over regions; any float dtype and device).

- ``profile``: per-region profile metrics (JSD, normalised JSD, shuffled baselines, Pearson,
  Spearman, cross-entropy, MNLL) and the batch entry point ``profile_metrics``.
- ``auprc``: BPNet's binned profile auPRC, per region or pooled over regions; ``labels``: its peak labels, bins and
  region mask (numpy or torch); ``pooled``: the pooled auPRC of a whole run in bounded memory (numpy, no torch).
- ``counts``: count metrics across regions (Pearson, Spearman, MSE, MAE, variance explained).
- ``count_summary``: ``count_metrics``, the same across one report's regions in numpy (no torch).
- ``smoothing``: bpnet-lite's Gaussian smoothing along positions.
- ``correlation``: Pearson/Spearman over the last axis with averaged or ordinal ranks.

See ``docs/metrics.md`` for the formulas and which peer uses which convention.
"""

from importlib import import_module

from .names import (BIN_SIZES, COUNT_METRICS_ALL, COUNT_METRICS_DEFAULT, PROFILE_METRICS_ALL,
                    PROFILE_METRICS_DEFAULT)

# The functions are torch code: imported from their module on first use, so that importing the names above
# (option parsing, reports) does not import torch.
_HOMES = {
    "auprc": ("average_precision", "binned_labels_scores", "pooled_auprc"),
    "labels": ("auprc_region_mask", "bin_labels", "bin_max", "peak_labels"),
    "correlation": ("average_ranks", "ordinal_ranks", "pearson", "ranks", "spearman"),
    "counts": ("count_mae", "count_mse", "count_pearson", "count_spearman", "count_variance_explained",
               "log1p_total"),
    "count_summary": ("count_metrics",),
    "profile": ("PROFILE_PRESETS", "cross_entropy", "flatten_tracks", "jsd_distance", "jsd_divergence",
                "kl_divergence", "mnll", "mnll_per_base", "normalized_jsd", "observed_probabilities",
                "permute_positions", "profile_metrics", "profile_pearson", "profile_spearman",
                "shuffled_jsd_distance"),
    "smoothing": ("gaussian_kernel", "smooth_gaussian1d"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name):
    if name in _HOME_OF:
        return getattr(import_module(f".{_HOME_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BIN_SIZES",
    "auprc_region_mask", "average_precision", "bin_labels", "bin_max", "binned_labels_scores",
    "peak_labels", "pooled_auprc",
    "average_ranks", "ordinal_ranks", "pearson", "ranks", "spearman",
    "COUNT_METRICS_ALL", "COUNT_METRICS_DEFAULT", "count_mae", "count_metrics", "count_mse",
    "count_pearson", "count_spearman", "count_variance_explained", "log1p_total",
    "PROFILE_METRICS_ALL", "PROFILE_METRICS_DEFAULT", "PROFILE_PRESETS", "cross_entropy",
    "flatten_tracks", "jsd_distance", "jsd_divergence", "kl_divergence", "mnll", "mnll_per_base",
    "normalized_jsd", "observed_probabilities", "permute_positions", "profile_metrics",
    "profile_pearson", "profile_spearman", "shuffled_jsd_distance",
    "gaussian_kernel", "smooth_gaussian1d",
]
