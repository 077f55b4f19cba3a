"""Warnings shown to a CLI user as one line each, ``kd-edge: warning: <message>``: never Python's
``file.py:82: UserWarning: ...`` followed by the source line that raised it."""
import contextlib
import functools
import warnings

import click


def _show(message, category, filename, lineno, file=None, line=None):
    click.echo(f"kd-edge: warning: {message}", err=True)


def show_warnings_in_one_line():
    """Install the one-line format for the rest of the process (the CLI does, for every command)."""
    warnings.showwarning = _show


@contextlib.contextmanager
def one_line_warnings():
    with warnings.catch_warnings():
        warnings.showwarning = _show
        yield


def shows_warnings_in_one_line(command_body):
    """Decorator for a command's function: its warnings print as one line each."""
    @functools.wraps(command_body)
    def run(*args, **kwargs):
        with one_line_warnings():
            return command_body(*args, **kwargs)

    return run


def heldout_line(best, *, what="held-out PSNR"):
    """'held-out PSNR 24.90 dB at step 500 (blurred input 24.21 dB; teacher 25.17 dB; 4 held-out crops)' from
    the trainer's ``best`` record (train.json): a score means little without the input's beside it."""
    if not best or best.get("psnr") is None:
        return f"{what}: not measured (no held-out split)"
    shown = [("blurred input", "blurred_psnr"), ("teacher", "teacher_psnr"), ("parent", "parent_psnr")]
    if best.get("teacher_psnr") is not None and best.get("teacher_psnr") == best.get("parent_psnr"):
        shown = [shown[0], ("parent (also the teacher)", "parent_psnr")]  # the parent distilled into its own copy
    beside = [f"{label} {best[key]:.2f} dB" for label, key in shown if best.get(key) is not None]
    if best.get("crops"):
        beside.append(f"{best['crops']} held-out crops")
    if best.get("harm_psnr") is not None:
        beside.append(f"sharp photos kept at {best['harm_psnr']:.2f} dB")
    text = f"{what} {best['psnr']:.2f} dB at step {best.get('step')}"
    if best.get("blurred_psnr") is not None and best["psnr"] < best["blurred_psnr"]:
        text += " - BELOW the blurred input"
    return text + (f" ({'; '.join(beside)})" if beside else "")
