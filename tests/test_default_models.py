"""The default teacher and student embedded in the package (kd_edge/weights/)."""
import json
import subprocess

import numpy as np
import pytest

from kd_edge.defaults import default_model_path, model_card_path


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """A small held-out synthetic set: a seed and size never used for the default models' training."""
    from kd_edge.data.pipeline import eval_pairs
    from kd_edge.data.synth import synthesize

    root = tmp_path_factory.mktemp("heldout")
    synthesize(root / "set", count=8, size=128, seed=4242, test_fraction=0.5, defocus=1.0, noise=0.01)
    return list(eval_pairs(root / "set" / "test"))


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_embedded_weights_load_and_beat_the_blurred_input(role, heldout):
    from kd_edge.metrics import psnr
    from kd_edge.models import load_model

    model, manifest = load_model(default_model_path(role))  # checks the sha256 in the manifest
    assert manifest["arch"].startswith("edge-")
    blurred = np.stack([b for _, b, _ in heldout])
    sharp = np.stack([s for _, _, s in heldout])
    restored = np.clip(model.predict(blurred, verbose=0), 0.0, 1.0)
    gain = float(np.mean(psnr(restored, sharp)) - np.mean(psnr(blurred, sharp)))
    assert gain > 0.1, f"the default {role} gains only {gain:.2f} dB over the blurred input"


def test_student_is_smaller_than_teacher_and_distilled_from_it():
    student = json.loads(default_model_path("student").with_suffix(".keras.json").read_text())
    teacher = json.loads(default_model_path("teacher").with_suffix(".keras.json").read_text())
    assert student["params"] < teacher["params"]
    distilled = student["lineage"][-1]
    assert distilled["method"] == "distill"
    assert distilled["teacher"]["sha256"] == teacher["sha256"]


def test_model_card_records_how_the_weights_were_made():
    card = model_card_path().read_text()
    for needle in ("kd-edge train-teacher", "kd-edge distill", "seed", "PSNR", "Limits"):
        assert needle in card, needle


def test_convert_with_no_model_uses_the_default_student(kd_edge_exe, tmp_path):
    res = subprocess.run([kd_edge_exe, "convert", "--target", "tflite-fp16", "--out", "out"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    artifact = tmp_path / "out" / "default-student.tflite-fp16.tflite"
    manifest = json.loads((tmp_path / "out" / "default-student.tflite-fp16.tflite.json").read_text())
    assert artifact.is_file()
    assert manifest["parity"]["passed"] is True
    assert manifest["parity"]["psnr_db"] >= manifest["parity"]["threshold_db"] >= 45
