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
    # the last distillation (a student may be distilled in stages, each from the previous student's weights) used
    # the embedded teacher: the same file, or the one its later rewrites came from
    distilled = [step for step in student["lineage"] if step["method"] == "distill"][-1]
    teacher_files = {teacher["sha256"]} | {step["from_sha256"] for step in teacher["lineage"]
                                           if step["method"] in ("set-gate-clip", "bound-attention")}
    assert distilled["teacher"]["sha256"] in teacher_files


def test_default_models_have_clip_free_gates():
    """The embedded gates have no input clip (it costs int8 speed): trained without one, or rewritten without it
    with the weights untouched and the outputs identical."""
    from kd_edge.models import load_model

    for role in ("teacher", "student"):
        model, manifest = load_model(default_model_path(role))
        clips = {layer.clip for layer in model.layers if type(layer).__name__ == "SimpleGate"}
        assert clips == {None}, (role, clips)
        rewrites = [step for step in manifest["lineage"] if step["method"] == "set-gate-clip"]
        assert all(step["keras_max_abs_diff_on_stress_inputs"] == 0.0 for step in rewrites), rewrites
    from kd_edge.defaults import default_qat_path

    qat, manifest = load_model(default_qat_path())
    config = json.dumps(qat.get_config())
    assert '"SimpleGate"' in config and '"clip": 16.0' not in config


def test_default_models_stay_within_fp16_range_inside_on_every_stress_input():
    """Issue 13: every intermediate activation stays bounded, not only the output. NAFNet's channel attention
    (x * conv(mean(x))) is quadratic: on a 4-px checkerboard the unbounded v22 student reached 7.1e19 inside and a
    longer-trained one NaN. The embedded models' attention is bounded (kd-edge bound-attention), so each stays
    finite and inside fp16's range (65504), as a mobile GPU delegate needs."""
    from kd_edge.models import load_model
    from kd_edge.models.attention_bound import attention_layers, is_bounded, largest_activation
    from kd_edge.models.complexity import model_stride
    from kd_edge.stress_inputs import stress_inputs

    for role in ("teacher", "student"):
        model, manifest = load_model(default_model_path(role))
        assert all(is_bounded(conv) for conv, _ in attention_layers(model)), role
        images = stress_inputs(64, stride=model_stride(model))
        peak, where = largest_activation(model, [image for _, image in images])
        assert peak < 65504, (role, peak, images[where][0])


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


@pytest.fixture(scope="module")
def default_student():
    from kd_edge.models import load_model

    return load_model(default_model_path("student"))[0]


def test_default_student_raw_output_stays_bounded_on_every_stress_input(default_student):
    """Issue 13: before any clip, the shipped student stays within [-0.25, 1.25] on images unlike its training
    crops (the old default gave -200..+150 on a dark face frame)."""
    from kd_edge.models.complexity import model_stride
    from kd_edge.stress_inputs import all_stress_inputs

    images = all_stress_inputs(64, stride=model_stride(default_student), max_side=256)
    worst = {}
    for name, image in images:
        raw = default_student.predict(image[None], verbose=0)[0]
        assert np.isfinite(raw).all(), name
        worst[name] = (float(raw.min()), float(raw.max()))
    outside = {n: r for n, r in worst.items() if r[0] < -0.25 or r[1] > 1.25}
    assert not outside, outside


def test_default_student_does_no_harm_to_sharp_real_photos(default_student):
    """A sharp photo made by others comes back almost unchanged: >= 35 dB on each sharp half of the real pairs."""
    from kd_edge.metrics import psnr
    from kd_edge.models.complexity import model_stride
    from kd_edge.stress_inputs import real_photo_inputs

    sharp = [(n, im) for n, im in real_photo_inputs(stride=model_stride(default_student), max_side=256,
                                                    include_unpaired=False) if n.endswith("/sharp")]
    if not sharp:
        pytest.skip("../shared/data/realblur is absent: no sharp real photos to measure on")
    scores = {}
    for name, image in sharp:
        out = np.clip(default_student.predict(image[None], verbose=0)[0], 0.0, 1.0)
        scores[name] = float(psnr(out, image))
    assert min(scores.values()) >= 35.0, sorted(scores.items(), key=lambda kv: kv[1])[:5]


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_default_models_leave_noisy_saturated_areas_without_a_lattice(role):
    """Issue 13: the v13 defaults drew an 8-px lattice of ~100 grey levels over a noisy, clipped cyan field (a blown
    sky, a neon sign) that no PSNR figure showed; the defaults now trained with --saturated must not."""
    from kd_edge.benchmarks import realdata
    from kd_edge.grid_artifacts import VISIBLE_LEVELS

    runtime, _, verified = realdata.load_runtime(default_model_path(role))
    grid = realdata.grid_artifacts(realdata.ModelRunner(runtime), {}, None)
    assert verified and grid["period"] == 8
    fields = grid["saturated_fields"]["per_input"]
    assert len(fields) == 10 and max(fields.values()) < VISIBLE_LEVELS, fields
    assert grid["synthetic_scenes"]["worst_levels"] < VISIBLE_LEVELS, grid["synthetic_scenes"]
