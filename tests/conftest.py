"""Shared fixtures. Tests use real TensorFlow, LiteRT, ONNX Runtime and real files; nothing is mocked."""
import os
import shutil
import sys
from pathlib import Path

import pytest

import kd_edge  # noqa: F401  (selects tf_keras before anything imports TensorFlow)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    """../shared beside the checkout (CI has it, a user's machine does not): skip when absent."""
    if not (SHARED_DIR / "data" / "realblur").is_dir():
        pytest.skip(f"{SHARED_DIR}/data/realblur is absent (only CI and the developers' machines have ../shared)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny synthetic DBlur set (8 pairs of 48 px, seed 0) for training tests; read only."""
    from kd_edge.data.synth import synthesize

    root = tmp_path_factory.mktemp("tinysynth") / "data"
    synthesize(root, count=8, size=48, seed=0)
    return root


@pytest.fixture(scope="session")
def kd_edge_exe():
    """The installed console script, next to the running interpreter."""
    exe = Path(sys.executable).with_name("kd-edge")
    if not exe.exists():
        found = shutil.which("kd-edge")
        if not found:
            pytest.fail("the kd-edge console script is not installed (run `make test`, which installs it)")
        exe = Path(found)
    return str(exe)
