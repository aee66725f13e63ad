"""The two interfaces every reader implements, and the read plan validation hands to a truth source.

A prediction source answers ``read(i, j)`` with ``(logits (b, S, L), logcounts (b, T))``, T = 1 or S;
a truth source answers ``read(i, j)`` with observed counts ``(b, S, L)`` float32, uncovered bases as 0.
Both describe themselves for reports and close their files. Everything format-specific (layouts,
chromosome names in a file, checks only one format needs) stays behind these two interfaces.
"""

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, Tuple

import numpy as np

from ..regions import Regions


@dataclass(frozen=True)
class ReadPlan:
    """How a truth source reads the regions, as validation decided: each track's chromosome names for the
    regions (names matched to the file's), rows not read (skipped: zeros) and rows read clipped to the
    chromosome (padded with zeros)."""

    chrom_names: Tuple[np.ndarray, ...] = ()
    skip_rows: frozenset = field(default_factory=frozenset)
    pad_rows: frozenset = field(default_factory=frozenset)


class PredictionSource(Protocol):
    """Predicted logits and log counts, region by region."""

    path: str                 # for messages: the file(s) read
    n: int                    # regions
    n_tracks: int             # S
    length: int               # L
    n_logcount_columns: int   # T: 1 (one log count per region) or S (one per track)
    chunk_rows: int = 1       # regions per storage chunk (shards align to it)
    # How region files are turned into this source's windows (``regions.read_regions``):
    window_center: Optional[str] = None    # the producer's window centre when --window-center is not given
    kept_mask: Optional[np.ndarray] = None  # which of the loci read were predicted (bpnet-lite's index mask)
    mask_path: str = ""                     # the file of that mask, for messages
    reads_own_windows: bool = False         # read over --regions itself (``regions()`` gives the windows)
    inflates_here: bool = False             # ``read`` inflates in this process (an ensemble reads it beside the others)

    def describe(self) -> dict:
        """What was detected and how it is read, for reports and ``check``."""

    def regions(self) -> Optional[Regions]:
        """The windows stored with the predictions, or None when there are none."""

    def read(self, i: int, j: int) -> Tuple[np.ndarray, np.ndarray]:
        """Logits ``(j-i, S, L)`` and log counts ``(j-i, T)`` of regions ``i..j``."""

    def stored_datasets(self) -> list:
        """HDF5 datasets read in batches (their claimed sizes are checked before any is read)."""
        return []

    def check_batch(self, logits: np.ndarray, observed: np.ndarray, regions: Optional[Regions], first_row: int) -> None:
        """Raise an InputError for what this format cannot score in one batch (nothing by default)."""

    def bigwig_readers(self) -> list:
        """The ``BigWigReader`` of each bigWig read (a run shares their memory: ``bigwig.share_run_memory``); none by
        default."""
        return []

    def will_read(self, start: int, stop: int, fork=None, read_ahead=None) -> None:
        """The run reads rows ``start..stop`` batch by batch from here on (a source may prepare for them; ``fork``:
        how to run a call in a process forked now, ``workers.ForkedCall``, where that is safe, else None;
        ``read_ahead(source)``: processes forked now that read the run's batches of ``source``, a truth-like source of
        ``(b, S, L)`` values, ahead, ``workers.ProcessReadAhead``, where reading processes are wanted, else None)."""

    def close(self) -> None:
        """Release the files."""


class TruthSource(Protocol):
    """Observed counts, region by region, in track order."""

    paths: Sequence[str]         # the files read, for messages (empty for arrays)
    n_tracks: int                # S
    n: Optional[int] = None      # regions stored, or None when read over the regions (bigWigs)
    length: Optional[int] = None  # L stored, or None when set by the regions
    forkable: bool = False       # may be read by forked worker processes (``bpnet_eval.workers``)

    def describe(self) -> dict:
        """What is read, for reports and ``check``."""

    def chrom_sizes(self) -> Optional[list]:
        """``{chromosome: length}`` per track for sources read over genome windows, else None."""
        return None

    def bigwig_readers(self) -> list:
        """As ``PredictionSource.bigwig_readers``."""
        return []

    def planned(self, plan: ReadPlan) -> "TruthSource":
        """This source reading as ``plan`` says (unchanged for sources without genome windows)."""
        return self

    def read(self, i: int, j: int) -> np.ndarray:
        """Observed counts ``(j-i, S, L)`` float32 of regions ``i..j``."""

    def will_read(self, start: int, stop: int) -> None:
        """The rows ``start..stop`` that this process reads batch by batch (a shard's, all, or none where reading
        processes read them), before it reads any."""

    def reads_blocks(self) -> bool:
        """Whether reading the rows of ``will_read`` decodes the files piece by piece as it goes (heavy enough for a
        reading process per file where there are CPUs for it); False by default."""
        return False

    def start_reading(self, tracks: Optional[Sequence[int]] = None, fork=None) -> None:
        """Called once by a reading process (``workers.ProcessReadAhead``) before its first batch, with the tracks
        it reads (None: all) and ``fork(call, what)``, which runs ``call()`` in a process forked now (``result()``,
        ``close()``: ``workers.ForkedCall``): a source may start work there (nothing by default)."""

    def read_with_work(self, i: int, j: int) -> Tuple[np.ndarray, object]:
        """``read(i, j)``, and what a reading process computed from that batch (``workers.ProcessReadAhead``'s
        ``work``): None here, where nothing was."""
        return self.read(i, j), None

    def read_into(self, i: int, j: int, out: np.ndarray, tracks: Optional[Sequence[int]] = None) -> None:
        """``out[...] = read(i, j)``, or only ``out[:, tracks]`` (a source may write ``out`` without the
        intermediate array, and read only the files of ``tracks``)."""
        values = self.read(i, j)
        if tracks is None:
            out[...] = values
        else:
            out[:, tracks] = values[:, tracks]

    def stored_datasets(self) -> list:
        """HDF5 datasets read in batches (their claimed sizes are checked before any is read)."""
        return []

    def close(self) -> None:
        """Release the files."""
