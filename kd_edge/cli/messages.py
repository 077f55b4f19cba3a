"""Warnings shown to a CLI user as one line each, ``kd-edge: warning: <message>``: never Python's
``file.py:82: UserWarning: ...`` followed by the source line that raised it."""
import contextlib
import functools
import warnings

import click


def _show(message, category, filename, lineno, file=None, line=None):
    click.echo(f"kd-edge: warning: {message}", err=True)


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
