"""bpnet-eval: score saved predictions of base-resolution genomics models against observed tracks.

The Python API (the names below are imported on first use, so ``import bpnet_eval`` stays light and
does not import torch):

- ``score(predictions, truth, regions=None, **options)`` → ``ScoreResult`` (per-region columns, summary);
- ``check(predictions, truth, regions=None, **options)`` → ``Findings`` (every problem, nothing scored);
- ``merge(partial_dirs)`` → the ``ScoreResult`` of the shards ``score --shard i/n`` wrote;
- ``compare_reports(*report_dirs)`` → the comparison ``bpnet-eval compare`` writes as compare.json;
- ``write_report(out_dir, result)``: the report directory the CLI writes (figures: ``draw_figures``);
- the options: ``ReadOptions``, ``ScoreOptions``, ``RunOptions``, ``Policies``; ``Regions``,
  ``read_region_file``; the errors ``BpnetEvalError``, ``UsageError``, ``InputError``.

>>> import numpy as np, bpnet_eval
>>> observed = np.zeros((2, 2, 10)); observed[:, 0, 3] = 4
>>> logits = np.zeros((2, 2, 10)); logcounts = np.log1p(np.full((2, 1), 4.0))
>>> result = bpnet_eval.score((logits, logcounts), observed, device="cpu", read_workers=0)
>>> result.columns["count_log1p_mse"].tolist()
[0.0, 0.0]
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "score": "pipeline", "check": "pipeline", "ScoreResult": "pipeline", "merge": "shards", "compare_reports": "compare",
    "write_report": "report.writer", "draw_figures": "report.figures",
    "ReadOptions": "options", "ScoreOptions": "options", "RunOptions": "options", "Policies": "options",
    "Job": "options", "Regions": "regions", "read_region_file": "regions", "Findings": "validate",
    "BpnetEvalError": "errors", "UsageError": "errors", "InputError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
