"""The console script itself: help, version, exit codes, one-line errors."""
import subprocess

import pytest

import kd_edge
from kd_edge.cli import COMMANDS


def run(exe, *args, timeout=120):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


def test_version(kd_edge_exe):
    res = run(kd_edge_exe, "--version")
    assert res.returncode == 0
    assert kd_edge.__version__ in res.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command_with_one_line(kd_edge_exe, flag):
    res = run(kd_edge_exe, flag)
    assert res.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in res.stdout, name


def test_help_does_not_import_tensorflow(kd_edge_exe):
    # --help must answer fast: the lazy group imports no command module, hence no TensorFlow.
    code = "import sys; from kd_edge.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit: pass\nprint('tensorflow' in sys.modules)"
    python = kd_edge_exe.rsplit("/", 1)[0] + "/python"
    res = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().splitlines()[-1] == "False"


def test_unknown_command_is_a_usage_error(kd_edge_exe):
    res = run(kd_edge_exe, "no-such-command")
    assert res.returncode == 2
    assert "No such command" in res.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_resolves_to_a_click_command(name):
    import importlib

    import click

    module_name, attr = COMMANDS[name][0].split(":")
    assert isinstance(getattr(importlib.import_module(module_name), attr), click.Command)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(kd_edge_exe, name):
    res = run(kd_edge_exe, name, "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout


def test_tf_legacy_keras_is_selected():
    import os

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    import tensorflow as tf

    assert "tf_keras" in type(tf.keras.layers.Dense(1)).__module__ or tf.keras.__name__.startswith("tf_keras")
