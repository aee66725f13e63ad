"""The package's shape, checked: no import cycle, the layers import only what is below them, sources are
used only through their interfaces, and a Python session that calls ``score()`` keeps its process as it was."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bpnet_eval"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set:
    """Every bpnet_eval module ``path`` imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bpnet_eval"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("bpnet_eval"):
                continue
            for alias in node.names:  # ``from . import x`` imports the module x
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return found - {name}


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_the_import_graph_has_no_cycle():
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def reaches(module: str) -> set:
    seen, todo = set(), [module]
    while todo:
        for nxt in GRAPH.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def under(prefixes, modules):
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


ABOVE_READERS = ("bpnet_eval.inputs", "bpnet_eval.validate", "bpnet_eval.pipeline", "bpnet_eval.shards",
                 "bpnet_eval.report", "bpnet_eval.cli", "bpnet_eval.compute", "bpnet_eval.workers",
                 "bpnet_eval.compare", "bpnet_eval.summary")


@pytest.mark.parametrize("layer, forbidden", [
    # readers know nothing above them
    (("bpnet_eval.sources", "bpnet_eval.regions", "bpnet_eval.options", "bpnet_eval.errors",
      "bpnet_eval.environment"), ABOVE_READERS),
    # validation returns findings and never drives the run
    (("bpnet_eval.validate",), ("bpnet_eval.inputs", "bpnet_eval.pipeline", "bpnet_eval.shards", "bpnet_eval.report",
                                "bpnet_eval.cli", "bpnet_eval.compute", "bpnet_eval.workers")),
    # the engine knows no CLI and writes no report
    (("bpnet_eval.pipeline", "bpnet_eval.inputs", "bpnet_eval.compute"), ("bpnet_eval.cli", "bpnet_eval.report")),
    # metrics and losses are pure: no readers, no reports, no processes
    (("bpnet_eval.metrics", "bpnet_eval.losses"), ("bpnet_eval.sources", "bpnet_eval.inputs", "bpnet_eval.report",
                                                   "bpnet_eval.cli", "bpnet_eval.workers", "bpnet_eval.pipeline")),
    # reports are written from a result and recompute nothing
    (("bpnet_eval.report",), ("bpnet_eval.losses", "bpnet_eval.compute", "bpnet_eval.metrics.profile",
                              "bpnet_eval.metrics.counts", "bpnet_eval.metrics.auprc", "bpnet_eval.pipeline",
                              "bpnet_eval.inputs", "bpnet_eval.sources", "bpnet_eval.workers", "bpnet_eval.cli")),
])
def test_each_layer_imports_only_what_is_below_it(layer, forbidden):
    for module in under(layer, GRAPH):
        assert not under(forbidden, reaches(module)), f"{module} reaches {under(forbidden, reaches(module))}"


def test_sources_are_used_through_their_interfaces_only():
    """Outside sources/, nothing names a concrete reader class or probes a source with getattr/isinstance."""
    concrete = re.compile(r"\b(HDF5Predictions|ArrayPredictions|NpzPredictions|BigWigPredictions|BigWigTruth|"
                          r"HDF5Truth|ArrayTruth|BigWigReader)\b")
    probing = re.compile(r"\b(getattr|hasattr|isinstance)\((self\.)?(preds|truth|truth_source|source|observed)\b")
    for path in PACKAGE.rglob("*.py"):
        if "sources" in path.relative_to(PACKAGE).parts:
            continue
        text = path.read_text()
        assert not concrete.search(text), f"{path}: {concrete.search(text).group(0)}"
        assert not probing.search(text), f"{path}: {probing.search(text).group(0)}"


@pytest.mark.slow
def test_importing_the_package_the_cli_and_the_engine_does_not_import_torch():
    """The pipeline opens the inputs and forks the readers before torch is imported (the import overlaps the
    reading, and no child holds torch's threads): nothing it imports at module level may import torch."""
    code = ("import sys, bpnet_eval, bpnet_eval.cli, bpnet_eval.options, bpnet_eval.metrics, bpnet_eval.pipeline, "
            "bpnet_eval.shards; "
            "bpnet_eval.ReadOptions; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


SESSION = r"""
import json, os, signal, sys
import numpy as np, pyBigWig, h5py

events = []
sys.addaudithook(lambda event, args: events.append([event, str(args[0])])
                 if event in ("ctypes.dlopen", "os.putenv", "os.unsetenv") else None)
import torch
import bpnet_eval

def state():
    handlers = {s.name: str(signal.getsignal(s)) for s in signal.valid_signals() if isinstance(s, signal.Signals)}
    return {"environ": dict(os.environ), "signals": handlers, "threads": torch.get_num_threads()}

# a case read by worker processes: bigWigs over 60 windows in batches of 8
length, n = 40, 60
rng = np.random.default_rng(0)
observed = rng.poisson(0.5, size=(n, 2, length)).astype(np.float64)
chroms = [("chr1", n * length)]
paths = []
for s, name in enumerate(("plus", "minus")):
    path = os.path.join(sys.argv[1], f"{name}.bw")
    bw = pyBigWig.open(path, "w")
    bw.addHeader(chroms)
    values = observed[:, s].ravel()
    bw.addEntries("chr1", 0, values=values.tolist(), span=1, step=1)
    bw.close()
    paths.append(path)
with h5py.File(os.path.join(sys.argv[1], "p.h5"), "w") as f:
    f["predictions/logits"] = rng.normal(size=(n, 2, length)).astype(np.float32)
    f["predictions/logcounts"] = np.log1p(observed.sum(axis=(1, 2)))[:, None]
    f["coords/coords_chrom"] = np.array([b"chr1"] * n)
    f["coords/coords_start"] = np.arange(n) * length
    f["coords/coords_end"] = np.arange(n) * length + length

before = state()
events.clear()
result = bpnet_eval.score(os.path.join(sys.argv[1], "p.h5"), paths, batch_size=8, read_workers=2, device="cpu")
bpnet_eval.write_report(os.path.join(sys.argv[1], "report"), result, {})
after = state()
print(json.dumps({"same": before == after, "events": events, "n": len(result.columns["profile_mnll"])}))
"""


@pytest.mark.slow
def test_a_python_session_keeps_its_allocator_environment_and_signal_handlers(tmp_path):
    done = subprocess.run([sys.executable, "-c", SESSION, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["n"] == 60 and outcome["same"]
    libc = [e for e in outcome["events"] if e[0] == "ctypes.dlopen" and "libc" in e[1]]
    environ = [e for e in outcome["events"] if e[0] in ("os.putenv", "os.unsetenv")]
    assert not libc, f"glibc was loaded to change the allocator: {libc}"
    assert not environ, f"the environment was changed: {environ}"


@pytest.mark.parametrize("module", ["bpnet_eval", "bpnet_eval.pipeline"])
def test_the_public_api_examples_run(module):
    import doctest
    import importlib

    outcome = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert outcome.attempted > 0 and outcome.failed == 0
