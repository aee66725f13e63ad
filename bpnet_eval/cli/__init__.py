"""The ``bpnet-eval`` command line: one module per command (``score``, ``check``, ``merge``, ``compare``),
the options they share declared once in ``common``. Parse, build the options, call the library, print.

A new option goes into the command's module (or ``common`` when score and check share it) and into the
option dataclass it belongs to (``bpnet_eval.options``). Choices are typed, so a bad value exits 2 while
the arguments are parsed, before any file is opened or torch is imported.
"""

import sys

import typer

from .. import __version__
from ..errors import EXIT_RUNTIME, EXIT_USAGE
from ..process import exit_now, tune_process
from .check import check
from .common import stderr
from .compare import compare
from .merge import merge
from .score import score

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Score saved predictions of base-resolution genomics models against observed tracks.")


def version_callback(value: bool):
    if value:
        print(f"bpnet-eval {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                              help="Print the version and exit.")):
    """Score saved predictions of BPNet/ChromBPNet-style models against observed tracks."""


EXAMPLES = {
    score: ["bpnet-eval score preds.h5 plus.bw minus.bw --regions peaks.narrowPeak --out report",
            "bpnet-eval score preds.h5 plus.bw minus.bw --preset chrombpnet --out report-chrombpnet",
            "bpnet-eval score pred.plus.bw,pred.minus.bw plus.bw minus.bw --regions windows.bed --pred-pseudocount 0.001",
            "bpnet-eval score preds.h5 plus.bw minus.bw --shard auto/8 --out shards/$SLURM_ARRAY_TASK_ID"],
    check: ["bpnet-eval check preds.h5 plus.bw minus.bw --regions peaks.narrowPeak"],
    merge: ["bpnet-eval merge shards/* --out report"],
    compare: ["bpnet-eval compare report-fold0 report-fold1 --out fold0-vs-fold1",
              "bpnet-eval compare fold0 fold1 fold2 ensemble --name f0 --name f1 --name f2 --name ens --out folds"],
}


def examples_epilog(lines) -> str:
    """The worked examples under a command's help (one per line; docs/usage.md has them all)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines) + "\n\nMore: docs/usage.md"


for command in (score, check, merge, compare):
    app.command(epilog=examples_epilog(EXAMPLES[command]))(command)


def run(args: list) -> int:
    """Run the command line ``args`` in this process; return the exit code. Usage errors become one line and 2,
    like the tool's own errors. Changes nothing process-wide (``main`` does)."""
    try:
        code = app(args=args, prog_name="bpnet-eval", standalone_mode=False)
    except typer.Abort:
        stderr.print("bpnet-eval: error: interrupted; no report was written", highlight=False)
        return 130
    except typer.Exit as stop:
        return stop.exit_code
    except typer.TyperException as err:  # click's usage errors
        ctx = getattr(err, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = " ".join(err.format_message().split())
        stderr.print(f"bpnet-eval: error: {message}{hint}", markup=False, highlight=False, soft_wrap=True)
        return getattr(err, "exit_code", EXIT_USAGE) or EXIT_USAGE
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_RUNTIME)
    return code if isinstance(code, int) else 0


def main():
    """Entry point of the ``bpnet-eval`` script: the process-wide settings (``process.tune_process``), the
    command, then a fast exit once every output is flushed."""
    args = sys.argv[1:]
    tune_process()
    if not args:
        app()  # prints the help
    exit_now(run(args))
