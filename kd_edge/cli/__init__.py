"""The ``kd-edge`` command line.

Sub-commands live in their own modules and are imported only when invoked, so ``kd-edge --help``
answers without importing TensorFlow, and a sub-command's arguments are checked before TensorFlow is
imported (``convert -t nosuch`` answers at once).

Exit codes: 0 ok; 1 a one-line error (``kd-edge: error: <file>: <problem>``), which includes an input
file or folder that does not exist; 2 a usage error: the command line itself is wrong (unknown command,
option or target, a malformed or out-of-range value, a missing argument).
"""
import copy
import functools
import importlib
import logging
import os
import sys
import traceback
import warnings

import click

from kd_edge import __version__
from kd_edge.errors import KdEdgeError

# name -> ("module:attribute", one-line help shown by ``kd-edge --help``)
COMMANDS = {
    "data": ("kd_edge.cli.data:data", "Synthesise blurred/sharp datasets and check DBlur-layout folders."),
    "models": ("kd_edge.cli.models:models", "List every architecture with its parameters and GMACs."),
    "train-teacher": ("kd_edge.cli.train:train_teacher", "Train a teacher model on a DBlur-layout or synthetic dataset."),
    "distill": ("kd_edge.cli.train:distill", "Distil a teacher into a small student (or train it alone)."),
    "export-step": ("kd_edge.cli.train:export_step", "Export the model of any kept checkpoint of a training run."),
    "prune": ("kd_edge.cli.compress:prune", "Prune a model: tfmot sparsity or real filter removal."),
    "quantize": ("kd_edge.cli.compress:quantize", "Quantization-aware training, or check which layers quantize."),
    "bound-attention": ("kd_edge.cli.compress:bound_attention",
                        "Bound a trained model's channel attention so no input can make it run away."),
    "convert": ("kd_edge.cli.convert:convert", "Convert a model to TFLite, ONNX or Core ML with a parity gate."),
    "bench": ("kd_edge.cli.bench:bench", "Benchmark latency and memory here, over ssh or on a phone."),
    "deblur": ("kd_edge.cli.deblur:deblur", "Deblur images of any size with tiled inference."),
    "eval": ("kd_edge.cli.eval:evaluate", "PSNR/SSIM evaluation and a report for any set of models."),
    "run": ("kd_edge.cli.run:run", "The whole job on the embedded default model (what `make run` does)."),
}

# Commands that always import TensorFlow: the CLI imports it first with its start-up noise silenced.
# (deblur and bench do not: a TFLite or ONNX run must not pay for TensorFlow's memory and start-up.)
# (models neither: its figures are cached in the package, see kd_edge.cli.models; export-step imports it only to
# export, not to list a run's steps.)
QUIET_TF_COMMANDS = {"train-teacher", "distill", "prune", "quantize", "bound-attention", "convert", "eval"}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

_state = {"debug": False}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if name in QUIET_TF_COMMANDS:
            command = _importing_tensorflow_first(command)
        return command

    def format_commands(self, ctx, formatter):
        rows = [(name, help_line) for name, (_, help_line) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _importing_tensorflow_first(command):
    """A copy of ``command`` that imports TensorFlow (quietly, unless --verbose) after its arguments were parsed
    and checked (so a usage error or ``-h`` never waits for TensorFlow) and before its body runs."""
    body = command.callback

    @functools.wraps(body)
    def run(*args, **kwargs):
        from kd_edge.quiet_import import import_tensorflow_quietly, is_quiet

        if is_quiet():
            import_tensorflow_quietly()
        return body(*args, **kwargs)

    wrapped = copy.copy(command)
    wrapped.callback = run
    return wrapped


def configure_logging(verbose: bool):
    """Quiet TensorFlow/absl start-up noise unless --verbose. Must run before TensorFlow is imported."""
    from kd_edge.quiet_import import set_quiet

    set_quiet(not verbose)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # oneDNN stays on (TensorFlow's x86 default): turning it off to hide its start-up line made every training
    # step 2.6-4.1x slower on the 2-core EPYC host (benchmarks/results/train_throughput.json)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"(tensorflow|tf_keras|keras|coremltools|tf2onnx|onnxconverter_common|onnxruntime).*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for noisy in ("tensorflow", "absl", "tf2onnx", "coremltools", "h5py", "onnxconverter_common", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="kd-edge")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow and converter logs.")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def cli(ctx, verbose, debug):
    """kd-edge: from a deblurring model to a phone, with proof of what it costs and keeps."""
    _state["debug"] = debug
    configure_logging(verbose)
    from kd_edge.cli.messages import show_warnings_in_one_line

    show_warnings_in_one_line()  # every command: `kd-edge: warning: ...`, never a file:line and its source line


def main(argv=None):
    """Console entry point. Turns errors into one line and the documented exit codes."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _state["debug"] = "--debug" in argv
    try:
        rv = cli.main(args=argv, prog_name="kd-edge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return _exit(exc.exit_code)
    except click.Abort:
        click.echo("kd-edge: aborted", err=True)
        return _exit(1)
    except click.ClickException as exc:  # usage errors: click prints them, exit 2
        exc.show()
        return _exit(exc.exit_code)
    except KdEdgeError as exc:
        if _state["debug"]:
            traceback.print_exc()
        click.echo(f"kd-edge: error: {exc}", err=True)
        return _exit(1)
    except KeyboardInterrupt:
        click.echo("kd-edge: interrupted", err=True)
        return _exit(130)
    except OSError as exc:  # a file or folder the OS refused: name it, in words, not as a Python class
        if _state["debug"]:
            traceback.print_exc()
        if exc.filename is None:
            click.echo(f"kd-edge: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        else:
            from kd_edge.cli.paths import os_reason

            click.echo(f"kd-edge: error: {exc.filename}: {os_reason(exc)}", err=True)
        return _exit(1)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback on --debug
        if _state["debug"]:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(f"kd-edge: error: {type(exc).__name__}: {first} (run with --debug for the traceback)", err=True)
        return _exit(1)
    return _exit(rv if isinstance(rv, int) else 0)


def _exit(code):
    sys.exit(code)
