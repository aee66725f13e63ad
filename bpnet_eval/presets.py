"""Which metrics a run computes (``--metrics``) and the peers' presets (``--preset``).

A ``MetricPlan`` names the profile metrics computed per batch beside the seed losses, their
options, and the count metrics of the summary. A preset is a plan plus the peer's own summary
file, written from the same per-region values:

- ``bpnet-lite``: per-strand MNLL, JSD (a divergence, NaN for an empty strand), Pearson (0 where
  a variance is 0) and Spearman (bpnet-lite's ``argsort().argsort()`` ranks, torch's tie order), all
  rounded to float32 as bpnet-lite stores them; counts Pearson/Spearman (same ranks)/MSE;
  ``performance.tsv`` as ``bpnet evaluate`` writes it: one row of torch means over regions and
  strands (a NaN makes the mean NaN), no final newline.
- ``chrombpnet``: JSD distance with observed ``k / (0.001 + sum k)``, normalised JSD, the
  shuffled-observed baseline; counts Spearman/Pearson/MSE; ``chrombpnet_metrics.json`` with
  peaks / nonpeaks / peaks_and_nonpeaks groups and NaN-ignoring medians.
- ``bpnet`` (original BPNet): profile auPRC pooled over regions and strands at bin sizes 1 and
  10; counts MSE, variance explained, Pearson, Spearman, MAE; ``bpnet_metrics.json``.
"""

import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .columns import predicted_total_logcounts
from .errors import UsageError
from .metrics.names import BIN_SIZES, COUNT_METRICS_ALL, COUNT_METRICS_DEFAULT, PROFILE_METRICS_ALL

# The count targets (``--count-target``): what a predicted log count ``c`` is compared with.
COUNT_TARGETS = {"log1p": "ln(1 + K)", "log": "ln K"}
# Computed in every run by the seed losses (joint) and the per-track MNLL.
SEED_PROFILE_METRICS = ("profile_mnll",)
SMOOTH_CHOICES = ("none", "predictions", "observed", "both")


@dataclass(frozen=True)
class MetricPlan:
    """What a run computes beyond the seed losses, and how."""

    profile_names: tuple = ()
    profile_options: dict = field(default_factory=dict)
    count_names: tuple = COUNT_METRICS_DEFAULT
    count_ties: str = "average"
    pooled_auprc: bool = False
    preset: Optional[str] = None
    count_target: str = "log1p"   # the count target: ln(1 + K) ("log1p", the seed) or ln K ("log", BPReveal)
    track_counts: bool = False    # per-track observed totals and predicted shares (BPReveal's per-bigWig counts)
    basepairmodels: bool = False  # basepairmodels' per-region metrics (bpm_<metric>_<track> columns)

    @property
    def needs_torch(self) -> bool:
        """Whether the run computes per region more than the seed losses and the pooled auPRC, which numpy computes
        without torch (``seed.SeedComputer``)."""
        return bool(self.profile_names or self.track_counts or self.basepairmodels)

    def describe(self) -> dict:
        """The plan as recorded in ``summary.json`` → ``settings.metrics``."""
        return {"preset": self.preset, "count_target": self.count_target,
                "profile": list(SEED_PROFILE_METRICS + self.profile_names),
                "profile_options": {k: v for k, v in self.profile_options.items()},
                "counts": list(self.count_names), "count_spearman_ties": self.count_ties,
                "pooled_auprc_bins": list(BIN_SIZES) if self.pooled_auprc else [],
                "conventions": self.conventions()}

    def conventions(self) -> dict:
        """Every scoring convention the run used, by name (``settings.metrics.conventions``; the report's settings
        table shows them): the count target, how profiles are normalised, how ties, zero variances, empty
        profiles and the observed pseudocount are treated, smoothing and the precision of the results."""
        options = self.profile_options
        smooth = [part for part, key in (("predictions", "smooth_predictions"), ("observed", "smooth_observed"))
                  if options.get(key)]
        return {
            "count_target": f"{self.count_target}: {COUNT_TARGETS[self.count_target]}",
            "seed_losses": "one multinomial over all tracks jointly (log_softmax over S*L); count loss "
                           f"({COUNT_TARGETS[self.count_target]} - c)^2",
            "profile_metrics": "joint (no suffix) and per track (_<track>: log_softmax over L)",
            "observed_probabilities": f"k / ({options['pseudocount']:g} + N)" if options.get("pseudocount") else "k / N",
            "jsd": "divergence and distance (scipy jensenshannon) as named by their columns",
            "spearman_ties": {"average": "averaged ranks (scipy)", "ordinal": "ordinal ranks, ties by position",
                              "argsort": "torch argsort().argsort() (bpnet-lite's tie order)"}[
                options.get("spearman_ties", "average")],
            "count_spearman_ties": self.count_ties,
            "zero_variance_correlation": "0" if options.get("pearson_zero_variance") == 0 else "NaN (undefined)",
            "empty_profile": "MNLL 0; JSD, correlations NaN (undefined, counted in n_undefined)",
            "smoothing": (f"gaussian sigma {options.get('sigma')} width {options.get('width')} on "
                          + " and ".join(smooth)) if smooth else "none",
            "results_precision": "float32 (as the peer stores them)" if options.get("float32_results")
                                 else "the run's dtype"}


PRESETS = {
    "bpnet-lite": MetricPlan(("profile_jsd_divergence", "profile_pearson", "profile_spearman"),
                             {"pearson_zero_variance": 0.0, "spearman_ties": "argsort", "float32_results": True},
                             ("pearson", "spearman", "mse"), "argsort", False, "bpnet-lite"),
    "chrombpnet": MetricPlan(("profile_jsd_distance", "profile_norm_jsd", "profile_jsd_observed_shuffled"),
                             {"pseudocount": 0.001}, ("spearman", "pearson", "mse"), "average", False,
                             "chrombpnet"),
    "bpnet": MetricPlan((), {}, ("mse", "variance_explained", "pearson", "spearman", "mae"), "average", True,
                        "bpnet"),
    "basepairmodels": MetricPlan((), {}, COUNT_METRICS_DEFAULT, "average", False, "basepairmodels",
                                 basepairmodels=True),
    "bpreveal": MetricPlan(("profile_jsd_distance", "profile_pearson", "profile_spearman"), {},
                           COUNT_METRICS_DEFAULT, "average", False, "bpreveal", count_target="log", track_counts=True),
}


def _metric_names(metrics: str) -> tuple:
    """``default`` → none beyond the seed; ``all`` → every profile metric; else a comma list."""
    if metrics == "default":
        return ()
    if metrics == "all":
        return tuple(n for n in PROFILE_METRICS_ALL if n not in SEED_PROFILE_METRICS)
    names = []
    for raw in metrics.split(","):
        name = raw.strip()
        name = name if name.startswith("profile_") else f"profile_{name}"
        if name not in PROFILE_METRICS_ALL:
            known = ", ".join(n.removeprefix("profile_") for n in PROFILE_METRICS_ALL)
            raise UsageError(f"--metrics: unknown metric '{raw.strip()}'; choose default, all or from: {known}")
        if name not in SEED_PROFILE_METRICS and name not in names:
            names.append(name)
    return tuple(names)


def make_plan(metrics: str = "default", preset: Optional[str] = None, smooth: str = "none",
              sigma: float = 7.0, width: int = 81, seed: int = 0, count_target: Optional[str] = None) -> MetricPlan:
    """The plan for ``--metrics``/``--preset``, the smoothing options and the count target (default: the
    preset's, else ``log1p``)."""
    if count_target is not None and count_target not in COUNT_TARGETS:
        raise UsageError(f"--count-target must be log1p (ln(1 + K)) or log (ln K), not '{count_target}'")
    if smooth not in SMOOTH_CHOICES:
        raise UsageError(f"--smooth must be one of {', '.join(SMOOTH_CHOICES)}, not '{smooth}'")
    if width < 1 or sigma <= 0:
        raise UsageError(f"--smooth-width must be >= 1 and --smooth-sigma > 0 (got {width}, {sigma})")
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, not '{preset}'")
        if metrics != "default":
            raise UsageError("--preset fixes the metrics; drop --metrics or --preset")
        base = PRESETS[preset]
    else:
        all_counts = metrics == "all"
        base = MetricPlan(_metric_names(metrics), {}, COUNT_METRICS_ALL if all_counts else COUNT_METRICS_DEFAULT,
                          "average", all_counts)
    options = dict(base.profile_options)
    if smooth != "none":
        options.update(smooth_predictions=smooth in ("predictions", "both"),
                       smooth_observed=smooth in ("observed", "both"), sigma=float(sigma), width=int(width))
    if base.profile_names and any("shuffled" in n for n in base.profile_names):
        options["seed"] = int(seed)
    return MetricPlan(base.profile_names, options, base.count_names, base.count_ties, base.pooled_auprc,
                      base.preset, count_target or base.count_target, base.track_counts, base.basepairmodels)


def _nanmedian(values) -> Optional[float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def _per_track(columns: dict, name: str, track_names) -> np.ndarray:
    """The per-track columns of ``name`` stacked ``(n, S)``; the joint column when S = 1."""
    if len(track_names) == 1:
        return columns[name][:, None]
    return np.stack([columns[f"{name}_{t}"] for t in track_names], axis=1)


BPNET_LITE_MEASURES = ("profile_mnll", "profile_jsd", "profile_pearson", "profile_spearman", "count_pearson",
                       "count_spearman", "count_mse")


def bpnet_lite_measures(columns: dict, track_names, dtype: str = "float32") -> dict:
    """bpnet-lite's ``calculate_performance_measures`` from the per-region columns, as torch tensors: the
    profile measures ``(n, S)`` float32 (the per-strand columns, already float32 values), the count measures
    ``(1,)`` computed as bpnet-lite does in the run's ``dtype`` (its Spearman ranks in float32)."""
    import torch

    from .metrics.correlation import argsort_ranks

    def lite_pearson(a, b):  # bpnet-lite's pearson_corr: 0 where the denominator is 0
        da, db = a - a.mean(dim=-1, keepdim=True), b - b.mean(dim=-1, keepdim=True)
        numerator = torch.sum(da * db, dim=-1)
        denominator = torch.sqrt(torch.sum(torch.square(da), dim=-1) * torch.sum(torch.square(db), dim=-1))
        return torch.where(denominator != 0, numerator / denominator, torch.zeros_like(numerator))

    profile = {"profile_mnll": "profile_mnll", "profile_jsd": "profile_jsd_divergence",
               "profile_pearson": "profile_pearson", "profile_spearman": "profile_spearman"}
    out = {name: torch.as_tensor(_per_track(columns, column, track_names), dtype=torch.float32).contiguous()
           for name, column in profile.items()}
    compute = getattr(torch, dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        predicted = predicted_total_logcounts(columns, track_names)
    predicted = torch.as_tensor(predicted, dtype=compute).reshape(1, -1)
    target = torch.log(torch.as_tensor(columns["observed_counts"], dtype=compute).reshape(1, -1) + 1)
    out["count_pearson"] = lite_pearson(predicted, target)
    out["count_spearman"] = lite_pearson(argsort_ranks(predicted), argsort_ranks(target))
    out["count_mse"] = torch.mean(torch.square(predicted - target), dim=-1)
    return out


def bpnet_lite_performance(columns: dict, summary: dict, track_names) -> str:
    """bpnet-lite's ``performance.tsv`` as ``bpnet evaluate`` writes it: the header, then
    ``str(measures[name].mean().item())`` of each measure (torch means: a NaN region makes the mean NaN),
    tab-separated, without a final newline."""
    dtype = summary.get("settings", {}).get("dtype", "float32")
    measures = bpnet_lite_measures(columns, track_names, dtype)
    row = [str(measures[name].mean().item()) for name in BPNET_LITE_MEASURES]
    return "\t".join(BPNET_LITE_MEASURES) + "\n" + "\t".join(row)


def chrombpnet_metrics(columns: dict, summary: dict, peak: Optional[np.ndarray]) -> dict:
    """chrombpnet's ``*_metrics.json`` (``chrombpnet.training.predict.main``): counts and profile medians per region
    group, in its order (``peaks_and_nonpeaks`` when there are both, ``nonpeaks``, ``peaks``: a group only when it
    has regions, as chrombpnet writes one only for the region files it was given), NaN where it writes NaN
    (``np.nanmedian`` of no defined value, a correlation of a constant)."""
    if peak is None:
        groups = {"peaks_and_nonpeaks": (summary, slice(None))}
    else:
        both = {"peaks_and_nonpeaks": (summary, slice(None))} if peak.any() and (~peak).any() else {}
        groups = {**both, **({"nonpeaks": (summary["groups"]["nonpeaks"], ~peak)} if (~peak).any() else {}),
                  **({"peaks": (summary["groups"]["peaks"], peak)} if peak.any() else {})}
    out = {"counts_metrics": {}, "profile_metrics": {}}
    for group, (part, rows) in groups.items():
        counts = {name: _nan_for_none(part["counts"][name]) for name in ("spearman", "pearson", "mse")}
        out["counts_metrics"][group] = {"spearmanr": counts["spearman"], "pearsonr": counts["pearson"],
                                        "mse": counts["mse"]}
        out["profile_metrics"][group] = {"median_jsd": _nan_for_none(_nanmedian(columns["profile_jsd_distance"][rows])),
                                         "median_norm_jsd": _nan_for_none(_nanmedian(columns["profile_norm_jsd"][rows]))}
    return out


def _nan_for_none(value) -> float:
    return float("nan") if value is None else value


def bpnet_metrics(summary: dict, auprc: dict) -> dict:
    """Original BPNet's metrics: pooled profile auPRC per bin size and the count regression metrics."""
    counts = summary["counts"]
    return {"profile": {key: {"auprc": value} for key, value in auprc.items()},
            "counts": {"mse": counts["mse"], "var_explained": counts["variance_explained"],
                       "pearsonr": counts["pearson"], "spearmanr": counts["spearman"], "mad": counts["mae"]}}


BPREVEAL_QUANTILES = np.linspace(0, 1, 5)


def bpreveal_region_values(columns: dict, track_names, track: int) -> dict:
    """BPReveal ``metrics``' per-region values of one track (its ``MetricsCalculator.runRegions``): ``mnll`` (the
    multinomial log-likelihood, ``-profile_mnll``), ``jsd`` (distance), ``pearsonr``, ``spearmanr`` and the
    observed and predicted totals (``e^(c + share)``), all NaN where either total is 0 ("poison the results")."""
    name = track_names[track]
    observed = np.asarray(columns[f"observed_tracktotal_{name}"], dtype=np.float64)
    with np.errstate(over="ignore"):
        predicted = np.exp(np.asarray(predicted_total_logcounts(columns, track_names, "log"), dtype=np.float64)
                           + columns[f"predicted_trackshare_{name}"])
    values = {"mnll": -_per_track(columns, "profile_mnll", track_names)[:, track],
              "jsd": _per_track(columns, "profile_jsd_distance", track_names)[:, track],
              "pearsonr": _per_track(columns, "profile_pearson", track_names)[:, track],
              "spearmanr": _per_track(columns, "profile_spearman", track_names)[:, track],
              "reference_counts": observed, "predicted_counts": predicted}
    poisoned = ~((observed > 0) & (predicted > 0))
    return {key: np.where(poisoned, np.nan, np.asarray(value, dtype=np.float64)) for key, value in values.items()}


def bpreveal_metrics(values: dict, skip_zeroes: bool, paths: dict) -> str:
    """The JSON BPReveal's ``metrics --json-output`` writes (``--skip-zeroes`` when ``skip_zeroes``): the 0, 25,
    50, 75 and 100 % quantiles of each profile metric over the regions (NaN anywhere makes them NaN, unless
    skipped; fewer than 5 values are replaced by five zeros, as it does), then Pearson and Spearman of the raw
    totals (NaN for 2 regions or fewer); ``json.dumps(..., indent=4)`` without a final newline."""
    from .metrics.correlation import pearson, spearman

    out = dict(paths)
    for key in ("mnll", "jsd", "pearsonr", "spearmanr"):
        vector = values[key][np.isfinite(values[key])] if skip_zeroes else values[key]
        if vector.shape[0] < 5:
            vector = np.zeros((5,))
        out[key] = {"quantile-cutoffs": [float(q) for q in BPREVEAL_QUANTILES],
                    "quantiles": [float(q) for q in np.quantile(vector, BPREVEAL_QUANTILES)]}
    reference, predicted = values["reference_counts"], values["predicted_counts"]
    if skip_zeroes:
        both = np.isfinite(reference) & np.isfinite(predicted)
        reference, predicted = reference[both], predicted[both]
    if reference.shape[0] > 2:
        import torch

        a, b = torch.as_tensor(reference), torch.as_tensor(predicted)
        out["counts-pearson"], out["counts-spearman"] = float(pearson(a, b)), float(spearman(a, b))
    else:
        out["counts-pearson"] = out["counts-spearman"] = float("nan")
    return json.dumps(out, indent=4)


def bpreveal_files(columns: dict, summary: dict, track_names) -> dict:
    """``bpreveal_metrics.<track>.json`` (BPReveal's default: a region without reads makes the numbers NaN) and
    ``bpreveal_metrics.<track>.skip-zeroes.json`` (``--skip-zeroes``) for each track, as ``metrics --json-output``
    writes them comparing that track's observed and predicted bigWigs over the regions."""
    inputs = summary.get("inputs", {})

    def track_path(source: dict, s: int) -> str:  # one file per track (bigWigs), else the one file
        paths = source.get("paths")
        return str(paths[s] if paths and len(paths) == len(track_names) else source.get("path"))

    files = {}
    for s, name in enumerate(track_names):
        paths = {"reference": track_path(inputs.get("truth", {}), s),
                 "predicted": track_path(inputs.get("predictions", {}), s),
                 "regions": str(inputs.get("regions")).split(" [")[0]}
        values = bpreveal_region_values(columns, track_names, s)
        files[f"bpreveal_metrics.{name}.json"] = bpreveal_metrics(values, False, paths)
        files[f"bpreveal_metrics.{name}.skip-zeroes.json"] = bpreveal_metrics(values, True, paths)
    return files


def _npy_bytes(array: np.ndarray, name: Optional[str] = None) -> bytes:
    """``np.save`` (or, with ``name``, ``np.savez_compressed(name=array)``) into bytes."""
    import io

    buffer = io.BytesIO()
    if name is None:
        np.save(buffer, array)
    else:
        np.savez_compressed(buffer, **{name: array})
    return buffer.getvalue()


def basepairmodels_files(columns: dict, track_names) -> dict:
    """The files basepairmodels' ``predict`` writes beside its predictions: ``<metric>.npz`` (one array
    ``(N, S)`` float64 named as the file: ``mnll``, ``cross_entropy``, ``jsd``, ``mse``, ``pearson``,
    ``spearman``), ``counts_pearson.npz``/``counts_spearman.npz`` (``(S,)``: each track's predicted log counts vs
    ``ln(1 + K_s)`` over the regions, ``scipy.stats`` definitions, NaN where undefined) and
    ``true_logcounts_<s>.npy``/``pred_logcounts_<s>.npy``."""
    import torch

    from .metrics.basepairmodels import BASEPAIRMODELS_METRICS
    from .metrics.correlation import pearson, spearman

    files = {f"{metric}.npz": _npy_bytes(np.stack([np.asarray(columns[f"bpm_{metric}_{t}"], dtype=np.float64)
                                                   for t in track_names], axis=1), metric)
             for metric in BASEPAIRMODELS_METRICS}
    correlations = {"counts_pearson": [], "counts_spearman": []}
    for s, name in enumerate(track_names):
        observed = columns.get(f"observed_counts_{name}", columns["observed_counts"])
        true = np.log(np.asarray(observed, dtype=np.float64) + 1)
        predicted = np.asarray(columns.get(f"predicted_logcounts_{name}", predicted_total_logcounts(columns, track_names)),
                               dtype=np.float64)
        files[f"true_logcounts_{s}.npy"] = _npy_bytes(true)
        files[f"pred_logcounts_{s}.npy"] = _npy_bytes(predicted)
        a, b = torch.as_tensor(true), torch.as_tensor(predicted)
        correlations["counts_pearson"].append(float(pearson(a, b)) if len(true) > 1 else float("nan"))
        correlations["counts_spearman"].append(float(spearman(a, b)) if len(true) > 1 else float("nan"))
    for key, values in correlations.items():
        files[f"{key}.npz"] = _npy_bytes(np.array(values, dtype=np.float64), key)
    return files


# One line per preset whose peer's numbers depend on an arbitrary detail of its computation (the report says so).
PRESET_NOTES = {
    "bpnet-lite": "--preset bpnet-lite: bpnet-lite ranks with argsort().argsort(), so its Spearman values depend on "
                  "the order torch's sort leaves tied values in (reproduced with the same sort; summary.json's "
                  "spearman columns of other runs average ties instead)",
    "basepairmodels": "--preset basepairmodels: basepairmodels moves the rounding excess of each predicted profile "
                      "onto its first largest or smallest probability (_fix_sum_to_one), which can break ties there: "
                      "its profile Spearman then depends on the last bits of its float32 profile and is reproduced "
                      "here to about 1e-3 (measured 5e-4), the other values to 1e-6",
}


def preset_notes(plan: MetricPlan) -> list:
    """The report line of a preset whose peer's numbers are partly arbitrary (``PRESET_NOTES``), if any."""
    return [PRESET_NOTES[plan.preset]] if plan.preset in PRESET_NOTES else []


def preset_files(plan: MetricPlan, columns: dict, summary: dict, peak, track_names) -> dict:
    """The preset's own summary files: ``{file name: text}`` (empty without a preset)."""
    if plan.preset == "bpnet-lite":
        return {"performance.tsv": bpnet_lite_performance(columns, summary, track_names)}
    if plan.preset == "chrombpnet":
        # json.dump(..., indent=4) as chrombpnet writes it: NaN as NaN, no final newline
        return {"chrombpnet_metrics.json": json.dumps(chrombpnet_metrics(columns, summary, peak), indent=4)}
    if plan.preset == "bpnet":
        return {"bpnet_metrics.json": json.dumps(bpnet_metrics(summary, summary["profile_auprc"]), indent=2) + "\n"}
    if plan.preset == "bpreveal":
        return bpreveal_files(columns, summary, track_names)
    if plan.preset == "basepairmodels":
        return basepairmodels_files(columns, track_names)
    return {}
