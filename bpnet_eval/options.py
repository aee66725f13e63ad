"""What a run reads, how it scores and how it runs: three frozen dataclasses, built once (by the CLI, or
from the Python API's keywords) and passed whole. Each checks its own values when it is made, so a bad
choice fails before any file is opened or torch is imported.

- ``ReadOptions``: how the inputs are read (dataset names, predicted-bigWig conventions, ``Policies``).
- ``ScoreOptions``: what is computed (loss weight, precision, metrics, preset, smoothing, track names).
- ``RunOptions``: how the work is run (device, batch size, reading processes, threads); never changes a number.
- ``Job``: the inputs plus the three, and the rows to score (all, or one shard's).
"""

import math
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Optional, Tuple

from .errors import UsageError


class Choice(str, Enum):
    """A fixed set of option values (typer shows and checks them; the library stores the plain string)."""

    def __str__(self) -> str:
        return self.value


class OffEnd(Choice):
    error = "error"
    skip = "skip"
    pad = "pad"


class NonFinite(Choice):
    error = "error"
    skip = "skip"


class Dtype(Choice):
    float64 = "float64"
    float32 = "float32"


class Smooth(Choice):
    none = "none"
    predictions = "predictions"
    observed = "observed"
    both = "both"


class Preset(Choice):
    bpnet_lite = "bpnet-lite"
    chrombpnet = "chrombpnet"
    bpnet = "bpnet"
    bpreveal = "bpreveal"
    basepairmodels = "basepairmodels"


class CountTarget(Choice):
    log1p = "log1p"
    log = "log"


class ProfileKind(Choice):
    logits = "logits"
    probs = "probs"
    counts = "counts"


class PredLogcounts(Choice):
    log = "log"
    log1p = "log1p"


class PredLogcountsPer(Choice):
    region = "region"
    track = "track"


class EnsembleLogcounts(Choice):
    mean_log = "mean-log"
    log_mean = "log-mean"


class RegionsFormat(Choice):
    auto = "auto"
    bed = "bed"
    narrowpeak = "narrowpeak"


class WindowCenter(Choice):
    summit = "summit"
    midpoint = "midpoint"


def _choice(value, choices, message: str) -> Optional[str]:
    """``value`` as its plain string when it is one of ``choices`` (None stays None), else a UsageError."""
    if value is None:
        return None
    text = value.value if isinstance(value, Enum) else str(value)
    if text not in {c.value for c in choices}:
        raise UsageError(message.format(value=text, choices=", ".join(c.value for c in choices)))
    return text


def at_least(value: float, low: float, option: str, strict: bool = False) -> float:
    """``value`` when finite and ``>= low`` (``> low`` when ``strict``), else a UsageError naming ``option``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and (number > low if strict else number >= low)):
        raise UsageError(f"{option} must be a finite number {'>' if strict else '>='} {low:g}, not {value}")
    return number


def checked_track_names(names) -> Optional[Tuple[str, ...]]:
    """``names`` as a tuple of strings, or a UsageError: each non-empty, unique, without a tab, newline or comma
    (they are column names of ``regions.tsv`` and a comma list on the command line)."""
    if names is None:
        return None
    names = tuple(str(name) for name in names)
    for k, name in enumerate(names):
        if not name.strip():
            raise UsageError(f"--track-names: name {k + 1} of {len(names)} is empty; give one name per track")
        bad = next((c for c in ("\t", "\n", "\r", ",") if c in name), None)
        if bad is not None:
            what = {"\t": "a tab", "\n": "a newline", "\r": "a carriage return", ",": "a comma"}[bad]
            raise UsageError(f"--track-names: {name!r} contains {what}; track names are column names of regions.tsv")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"--track-names: {repeated[0]!r} is given {names.count(repeated[0])} times; give each "
                         "track a different name")
    return names


def _set(instance, **values) -> None:
    for name, value in values.items():
        object.__setattr__(instance, name, value)


@dataclass(frozen=True)
class Policies:
    """What to do with windows past a chromosome end, non-finite predictions and external HDF5 data."""

    off_end: str = "error"
    nonfinite: str = "error"
    allow_external_links: bool = False

    def __post_init__(self):
        _set(self, off_end=_choice(self.off_end, OffEnd, "--off-end must be one of {choices}, not '{value}'"),
             nonfinite=_choice(self.nonfinite, NonFinite, "--nonfinite must be one of {choices}, not '{value}'"),
             allow_external_links=bool(self.allow_external_links))


@dataclass(frozen=True)
class ReadOptions:
    """How the inputs are read.

    Parameters
    ----------
    logits_dataset, logcounts_dataset : str, optional
        HDF5 datasets of the predicted profile and log counts (default: the detected layout's).
    profile_kind : {"logits", "probs", "counts"}, optional
        What the profile dataset holds (default: from the layout).
    head : int, optional
        BPReveal head (default: the first).
    truth_dataset : str, optional
        HDF5 dataset of observed counts in a TRUTH HDF5 file.
    pred_logcounts_per : {"region", "track"}
        bigWig predictions only: one predicted log count per window over all tracks (default), or one per
        track from that track's own total (models that predict a total per strand: BPNet, bpnet 2.0).
    pred_pseudocount, pred_logcounts : float, {"log", "log1p"}
        bigWig predictions only: added to every predicted value before normalising the profile; the
        predicted log count is ``ln(total)`` or ``ln(1 + total)``.
    policies : Policies
        Off-end windows, non-finite predictions, HDF5 external links.
    regions_format : {"auto", "bed", "narrowpeak"}
        How a region file is read: auto (narrowPeak when every row reads as narrowPeak, BED when none does;
        rows that disagree are an error), bed (start..end) or narrowpeak (start + summit ± L/2).
    window_center : {"summit", "midpoint"}, optional
        Where region windows are centred (default: the producer's convention: midpoint for bpnet-lite .npz
        predictions, else the narrowPeak summit, or start..end for BED).
    chroms : sequence of str, optional
        Keep only region-file rows on these chromosomes (before several files are interleaved).
    length : int, optional
        L, for predicted bigWigs read over narrowPeak or midpoint-centred windows (L is not stored there).
    ensemble : sequence
        More predictions of the same regions (paths, each as ``predictions`` takes them): the ensemble of them
        all is scored (``sources.ensemble``).
    ensemble_logcounts : {"mean-log", "log-mean"}
        The ensemble's log counts: the mean of the members' log counts, or the log of their mean counts.
    """

    logits_dataset: Optional[str] = None
    logcounts_dataset: Optional[str] = None
    profile_kind: Optional[str] = None
    head: Optional[int] = None
    truth_dataset: Optional[str] = None
    pred_pseudocount: float = 0.0
    pred_logcounts: str = "log"
    policies: Policies = field(default_factory=Policies)
    regions_format: str = "auto"
    window_center: Optional[str] = None
    chroms: Optional[Tuple[str, ...]] = None
    length: Optional[int] = None
    ensemble: Tuple[Any, ...] = ()
    ensemble_logcounts: str = "mean-log"
    pred_logcounts_per: str = "region"

    def __post_init__(self):
        ensemble = self.ensemble
        _set(self, ensemble=(ensemble,) if isinstance(ensemble, str) or hasattr(ensemble, "__fspath__")
             else tuple(str(p) if hasattr(p, "__fspath__") else p for p in (ensemble or ())),
             ensemble_logcounts=_choice(self.ensemble_logcounts or "mean-log", EnsembleLogcounts,
                                        "--ensemble-logcounts must be one of {choices}, not '{value}'"))
        _set(self, regions_format=_choice(self.regions_format or "auto", RegionsFormat,
                                          "--regions-format must be one of {choices}, not '{value}'"),
             window_center=_choice(self.window_center, WindowCenter,
                                   "--window-center must be one of {choices}, not '{value}'"),
             chroms=None if self.chroms is None else tuple(
                 c.strip() for c in (self.chroms.split(",") if isinstance(self.chroms, str) else self.chroms)))
        if self.length is not None and (isinstance(self.length, bool) or int(self.length) != self.length
                                        or self.length < 1):
            raise UsageError(f"--length must be a whole number >= 1, not {self.length}")
        _set(self, profile_kind=_choice(self.profile_kind, ProfileKind,
                                        "--profile-kind must be one of {choices}, not '{value}'"),
             pred_logcounts=_choice(self.pred_logcounts, PredLogcounts,
                                    "--pred-logcounts must be log (ln(total)) or log1p (ln(1 + total)), not '{value}'"),
             pred_logcounts_per=_choice(self.pred_logcounts_per or "region", PredLogcountsPer,
                                        "--pred-logcounts-per must be region or track, not '{value}'"),
             pred_pseudocount=at_least(self.pred_pseudocount, 0.0, "--pred-pseudocount"),
             policies=self.policies if self.policies is not None else Policies())

    @property
    def prediction_options(self) -> dict:
        """The keywords the prediction sources take."""
        return {"logits_dataset": self.logits_dataset, "logcounts_dataset": self.logcounts_dataset,
                "profile_kind": self.profile_kind, "head": self.head, "pred_pseudocount": self.pred_pseudocount,
                "pred_logcounts": self.pred_logcounts, "pred_logcounts_per": self.pred_logcounts_per,
                "ensemble": self.ensemble,
                "ensemble_logcounts": self.ensemble_logcounts, **self.region_options}

    @property
    def region_options(self) -> dict:
        """How region files are read (``regions.read_regions``)."""
        return {"regions_format": self.regions_format, "window_center": self.window_center, "chroms": self.chroms,
                "length": self.length}


@dataclass(frozen=True)
class ScoreOptions:
    """What a run computes.

    Parameters
    ----------
    count_loss_weight : float
        Weight of the count term in the mixture loss.
    dtype : {"float64", "float32"}
        Precision of the computation.
    track_names : sequence of str, optional
        Column suffixes (default: ``plus, minus`` for two tracks, else ``track0, ...``).
    metrics : str
        ``default``, ``all`` or a comma list of profile metrics (docs/metrics.md).
    preset : {"bpnet-lite", "chrombpnet", "bpnet", "bpreveal"}, optional
        A peer's definitions, columns and summary file.
    smooth, smooth_sigma, smooth_width : str, float, int
        Gaussian smoothing of the profiles compared by the shape metrics.
    seed : int
        Seed of the shuffled baselines.
    groups : sequence of str
        Region group files (``bpnet_eval.groups``): every summary also per group of each grouping they give.
    count_target : {"log1p", "log"}, optional
        What the predicted log count is compared with: ``ln(1 + K)`` (the seed) or ``ln K`` (BPReveal's
        training target); default the preset's, else ``log1p``.
    """

    count_loss_weight: float = 1.0
    dtype: str = "float64"
    track_names: Optional[Tuple[str, ...]] = None
    metrics: str = "default"
    preset: Optional[str] = None
    smooth: str = "none"
    smooth_sigma: float = 7.0
    smooth_width: int = 81
    seed: int = 0
    groups: Tuple[str, ...] = ()
    count_target: Optional[str] = None

    def __post_init__(self):
        groups = (self.groups,) if isinstance(self.groups, (str, bytes)) or hasattr(self.groups, "__fspath__") \
            else tuple(self.groups or ())
        _set(self, groups=tuple(str(path) for path in groups))
        _set(self, count_target=_choice(self.count_target, CountTarget,
                                        "--count-target must be log1p (ln(1 + K)) or log (ln K), not '{value}'"))
        _set(self, dtype=_choice(self.dtype, Dtype, "--dtype must be float32 or float64, not '{value}'"),
             smooth=_choice(self.smooth, Smooth, "--smooth must be one of {choices}, not '{value}'"),
             preset=_choice(self.preset, Preset, "--preset must be one of {choices}, not '{value}'"),
             count_loss_weight=at_least(self.count_loss_weight, 0.0, "--count-loss-weight"),
             smooth_sigma=at_least(self.smooth_sigma, 0.0, "--smooth-sigma", strict=True),
             track_names=checked_track_names(self.track_names))
        width = self.smooth_width
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) \
                or int(width) != width or width < 1:
            raise UsageError(f"--smooth-width must be a whole number >= 1, not {width}")
        _set(self, smooth_width=int(width))
        self.plan  # checks --metrics, --preset and the smoothing options together

    @property
    def plan(self):
        """The ``presets.MetricPlan`` these options select."""
        from .presets import make_plan

        return make_plan(self.metrics, self.preset, self.smooth, self.smooth_sigma, self.smooth_width, self.seed,
                         self.count_target)


# Default shared memory (MB) for batches read ahead: a few batches. Every page of it is faulted in once per run
# (4 kB shared pages, ~0.3 s of system time for 256 MB here); the computation, not the reading, sets the pace.
READ_AHEAD_MB = 32
# A batch's regions by default, and the most values (regions x S x L) a batch holds by default: long windows get
# fewer regions a batch, so that a batch's memory does not grow with L (1024 x 2 x 1000 values are 8 MB as float32).
DEFAULT_BATCH_REGIONS, BATCH_VALUES = 1024, 1 << 21


def batch_regions(requested: Optional[int], n_tracks: int, length: int) -> int:
    """Regions per batch: ``requested`` where given, else ``DEFAULT_BATCH_REGIONS``, or fewer (at least one) where
    that many regions of ``n_tracks`` x ``length`` values would hold more than ``BATCH_VALUES``."""
    if requested is not None:
        return requested
    return max(1, min(DEFAULT_BATCH_REGIONS, BATCH_VALUES // max(1, n_tracks * length)))
# Default memory (MB) a run's bigWigs keep decoded (whole, where the windows lie, or blocks cached), shared equally
# among them: up to four files keep what one alone keeps (``sources.bigwig``: 128 MB), more files less of each.
BIGWIG_MEMORY_MB = 512


@dataclass(frozen=True)
class RunOptions:
    """How the work is run; none of these changes a number.

    Parameters
    ----------
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. ``auto``: the CPU (numpy, torch not imported) for the default
        metrics in float64, else the GPU when torch sees one.
    batch_size : int, optional
        Regions per batch (default: ``batch_regions``: 1024, fewer where a region holds more than 2,048 values,
        S x L, so that a batch holds at most ``BATCH_VALUES``).
    read_workers : int, optional
        Processes reading the observed bigWigs ahead (default: half the CPUs, at most 4, or one per file for files
        too big to keep, up to one per CPU; 0: a thread, also for predicted bigWigs).
    read_ahead_mb : int
        Shared memory the reading processes fill ahead of the computation (``READ_AHEAD_MB``; never fewer
        than the batches in use plus two per process), and memory for the predictions read ahead (at least one
        batch, at most ``inputs.MAX_PREDICTIONS_AHEAD``).
    threads : int, optional
        torch threads while computing, and on the CPU the threads computing the metrics beyond the seed losses
        piece by piece (``compute.piece_threads``) (default: as torch is set); the CLI gives the allotted CPUs.
    bigwig_memory_mb : int
        Memory the run's bigWigs (observed and predicted) keep decoded, shared equally among them
        (``bigwig.share_run_memory``; ``BIGWIG_MEMORY_MB``): a file over its share is read block by block.
    """

    device: str = "auto"
    batch_size: Optional[int] = None
    read_workers: Optional[int] = None
    read_ahead_mb: int = READ_AHEAD_MB
    threads: Optional[int] = None
    bigwig_memory_mb: int = BIGWIG_MEMORY_MB

    def __post_init__(self):
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.read_workers is not None and self.read_workers < 0:
            raise UsageError(f"--read-workers must be 0 or more, not {self.read_workers}")
        if self.read_ahead_mb < 0:
            raise UsageError(f"--read-ahead-mb must be 0 or more, not {self.read_ahead_mb}")
        if self.bigwig_memory_mb < 0:
            raise UsageError(f"--bigwig-memory-mb must be 0 or more, not {self.bigwig_memory_mb}")


@dataclass(frozen=True, eq=False)
class Job:
    """One scoring run: the inputs (paths or arrays), the three option sets and the rows to score.

    ``rows``: ``(start, stop)``, 0-based half-open, for one shard; None scores every region.
    """

    predictions: Any
    truth: Any
    regions: Any = None
    read: ReadOptions = field(default_factory=ReadOptions)
    scoring: ScoreOptions = field(default_factory=ScoreOptions)
    run: RunOptions = field(default_factory=RunOptions)
    rows: Optional[Tuple[int, int]] = None

    @classmethod
    def of(cls, predictions, truth, regions=None, rows: Optional[Tuple[int, int]] = None, **options) -> "Job":
        """A job with ``options`` given by field name (``metrics="all"``, ``device="cpu"``; see ``split_options``)."""
        return cls(predictions, truth, regions, *split_options(**options), rows=rows)


OPTION_CLASSES = (ReadOptions, ScoreOptions, RunOptions)


def split_options(read: Optional[ReadOptions] = None, scoring: Optional[ScoreOptions] = None,
                  run: Optional[RunOptions] = None, **keywords) -> Tuple[ReadOptions, ScoreOptions, RunOptions]:
    """The three option sets, with ``keywords`` (any of their field names) applied on top: the Python API's
    shortcut, ``score(p, t, metrics="all", device="cpu")``. An unknown name is a TypeError."""
    given = [read or ReadOptions(), scoring or ScoreOptions(), run or RunOptions()]
    out = []
    for base, cls in zip(given, OPTION_CLASSES):
        names = {f.name for f in fields(cls)}
        mine = {k: keywords.pop(k) for k in list(keywords) if k in names}
        out.append(base if not mine else cls(**{**{f.name: getattr(base, f.name) for f in fields(cls)}, **mine}))
    if keywords:
        known = sorted(f.name for cls in OPTION_CLASSES for f in fields(cls))
        raise TypeError(f"unknown option(s) {', '.join(sorted(keywords))}; known: {', '.join(known)}")
    return tuple(out)
