"""Training throughput evidence (benchmarks/train_throughput.py): kd-edge asks for TensorFlow's oneDNN kernels (the CLI
once turned them off to hide a start-up line, which made every training step 2.6x slower, and TensorFlow itself
leaves them off on AVX2-only CPUs such as AMD Zen 3, 3.3x slower there), and the benchmark runs the real
`kd-edge train-teacher` in fresh processes with oneDNN on and off and writes what it measured."""
import json
import os
import subprocess
import sys

from kd_edge.benchmarks import train_throughput

_ONEDNN_STATE = ("import os, kd_edge; from kd_edge.cli import configure_logging; configure_logging(False); "
                 "import tensorflow; from tensorflow.python.util import _pywrap_util_port as port; "
                 "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'), port.IsMklEnabled())")


def _onednn_state(value):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = value
    out = subprocess.run([sys.executable, "-c", _ONEDNN_STATE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()[-2:]


def test_kd_edge_turns_onednn_on_on_every_cpu_unless_the_user_chose():
    # TensorFlow's own default is on only with AVX512-VNNI/BF16, AVX-VNNI or AMX: this must hold on AVX2 hosts too
    assert _onednn_state(None) == ["1", "True"]
    assert _onednn_state("0") == ["0", "False"]


def test_train_throughput_measures_real_training_with_onednn_on_and_off(tmp_path):
    path = tmp_path / "throughput.json"
    train_throughput.main(["--arch", "edge-tiny", "--patch", "32", "--batch", "2", "--steps", "3",
                           "--repeats", "1", "--json", str(path)])
    doc = json.loads(path.read_text())
    assert [(r["arch"], r["patch"], r["batch"], r["onednn"], r["precision"]) for r in doc["rows"]] == [
        ("edge-tiny", 32, 2, "on", "float32"), ("edge-tiny", 32, 2, "off", "float32")]
    for row in doc["rows"]:
        assert row["steps_per_s"] > 0 and row["patches_per_s"] == row["steps_per_s"] * 2
        assert len(row["repeats"]) == 1 and row["repeats"][0]["seconds"] > 0
    (ratio,) = doc["onednn_ratios"]
    assert ratio["onednn_on_over_off"] == doc["rows"][0]["steps_per_s"] / doc["rows"][1]["steps_per_s"]
    assert doc["host"]["isa_flags"] and doc["host_line"]


def test_train_throughput_rejects_an_unknown_onednn_value(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        train_throughput.main(["--onednn", "maybe", "--json", str(tmp_path / "x.json")])
    assert exc.value.code == 2 and "--onednn takes on and/or off, not maybe" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_train_throughput_compares_bfloat16_with_float32(tmp_path):
    path = tmp_path / "precision.json"
    train_throughput.main(["--arch", "edge-tiny", "--patch", "32", "--batch", "2", "--steps", "3", "--onednn", "on",
                           "--precision", "float32,bfloat16", "--repeats", "1", "--json", str(path)])
    doc = json.loads(path.read_text())
    assert [r["precision"] for r in doc["rows"]] == ["float32", "bfloat16"] and doc["onednn_ratios"] == []
    (ratio,) = doc["precision_ratios"]
    assert ratio["onednn"] == "on" and ratio["arch"] == "edge-tiny"
    assert ratio["bfloat16_over_float32"] == doc["rows"][1]["steps_per_s"] / doc["rows"][0]["steps_per_s"]
