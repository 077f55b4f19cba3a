"""kd_edge.grid_artifacts: a stride-locked lattice is measured at its amplitude; content, noise, sharpening and the
removal of a lattice are not flagged; a real Keras model that paints a lattice is caught by the real-data check."""
from pathlib import Path

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.converters.parity import synthetic_blurred
from kd_edge.grid_artifacts import VISIBLE_LEVELS, added_grid, grid_map, summarize, tile_amplitude

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def lattice(size, levels, period=8):
    """Grid lines every ``period`` px, zero mean, RMS ``levels`` (8-bit levels), HxWx3."""
    yy, xx = np.mgrid[0:size, 0:size]
    pattern = ((yy % period == 0) | (xx % period == 0)).astype(np.float64)
    pattern = (pattern - pattern.mean()) / pattern.std() * levels / 255.0
    return np.repeat(pattern[..., None], 3, axis=-1).astype(np.float32)


def unsharp(image, amount):
    import cv2

    return image + amount * (image - cv2.GaussianBlur(image, (0, 0), 1.5))


@pytest.fixture(scope="module")
def scenes():
    return synthetic_blurred(6, 128, seed=777)


@pytest.mark.parametrize("levels", [3.0, 6.0, 12.0])
def test_an_added_lattice_is_measured_at_its_amplitude(scenes, levels):
    measured = [added_grid(image, image + lattice(128, levels)) for image in scenes]
    assert all(m["period"] == 8 and m["tiles"] == 9 for m in measured)
    values = [m["levels"] for m in measured]
    # at its amplitude where a tile is flat enough to see it; under busy content (edges everywhere) it reads low,
    # never high: the measure errs towards "no lattice"
    assert max(values) == pytest.approx(levels, rel=0.35), values
    assert min(values) >= 0.4 * levels, values


def test_content_noise_and_sharpening_are_not_a_lattice(scenes):
    rng = np.random.default_rng(3)
    for image in scenes:
        assert added_grid(image, image)["levels"] == 0.0
        assert added_grid(image, image + rng.normal(0, 0.01, image.shape))["levels"] < VISIBLE_LEVELS
        assert added_grid(image, unsharp(image, 2.0))["levels"] < VISIBLE_LEVELS
        # the same lattice in the input and the output: nothing added
        with_grid = image + lattice(128, 6.0)
        assert added_grid(with_grid, with_grid)["levels"] == 0.0


def test_removing_a_lattice_is_not_flagged_and_the_period_is_a_parameter(scenes):
    image = scenes[0]
    assert added_grid(image + lattice(128, 8.0), image)["levels"] == 0.0  # e.g. JPEG deblocking
    wide = added_grid(image, image + lattice(128, 8.0, period=16), period=16)
    assert wide["period"] == 16 and wide["levels"] > VISIBLE_LEVELS


def test_tile_amplitude_shapes_and_errors():
    block = lattice(64, 5.0)
    assert tile_amplitude(block).shape == (3,)
    assert tile_amplitude(np.stack([block, block])).shape == (2, 3)
    assert tile_amplitude(block[..., 0]).shape == (1,)
    with pytest.raises(ValueError, match="multiple of 32"):
        tile_amplitude(np.zeros((48, 48, 3)))
    assert grid_map(np.zeros((16, 16, 3))) == []  # too small for one tile
    assert added_grid(np.zeros((16, 16, 3)), np.ones((16, 16, 3)))["levels"] == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        added_grid(np.zeros((64, 64, 3)), np.zeros((64, 32, 3)))
    summary = summarize([1.0, 9.0, 2.0])
    assert summary["worst_levels"] == 9.0 and summary["worst_index"] == 1 and summary["visible_count"] == 1


def lattice_painter(path, levels):
    """A real stride-8 Keras model: output = input + a fixed 8-px lattice (average-pool by 8, a 1x1 convolution
    whose bias is the pattern, DepthToSpace(8)), the way a U-Net's pixel shuffle can paint one."""
    import tf_keras as keras

    from kd_edge.models import save_model
    from kd_edge.models.layers import DepthToSpace

    inputs = keras.Input((None, None, 3))
    pattern = lattice(8, levels)  # one period of the lattice
    bias = keras.initializers.Constant(pattern.reshape(-1))
    cells = keras.layers.Conv2D(8 * 8 * 3, 1, kernel_initializer="zeros", bias_initializer=bias)(
        keras.layers.AveragePooling2D(8)(inputs))
    outputs = keras.layers.Add()([inputs, DepthToSpace(8)(cells)])
    save_model(keras.Model(inputs, outputs), path)
    return path


def identity_model(path):
    import tf_keras as keras

    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Rescaling(1.0)(inputs)).save(path)
    return path


def test_the_real_data_check_catches_a_model_that_paints_a_lattice(tmp_path):
    from kd_edge.benchmarks import realdata

    checks = {}
    for path in (identity_model(tmp_path / "identity.keras"), lattice_painter(tmp_path / "painter.keras", 8.0)):
        runtime, _, _ = realdata.load_runtime(path)
        checks[path.stem] = realdata.grid_artifacts(realdata.ModelRunner(runtime), {}, None, field_size=64)
    identity, painted = checks["identity"], checks["painter"]
    assert identity["period"] == 8 and painted["period"] == 8  # no stride known: 8; the painter's own stride: 8
    assert identity["clean"] is True and identity["worst_levels"] == 0.0
    assert painted["clean"] is False
    assert painted["synthetic_scenes"]["worst_levels"] == pytest.approx(8.0, rel=0.35)
    assert set(painted["saturated_fields"]["per_input"]) >= {"noisy_cyan", "noisy_green", "noisy_red"}
    # on a saturated field the lattice is clipped where the field is at 0 or 1, but still plain
    assert painted["saturated_fields"]["worst_levels"] > VISIBLE_LEVELS


def test_grid_check_script_writes_json_per_model(tmp_path, capsys):
    from kd_edge.benchmarks import grid_check

    identity = identity_model(tmp_path / "identity.keras")
    painter = lattice_painter(tmp_path / "painter.keras", 8.0)
    out = tmp_path / "grid.json"
    assert grid_check.main([str(identity), str(painter), "--names", "identity,painter", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "identity: 8-px lattice" in printed and "clean" in printed and "VISIBLE" in printed
    import json

    doc = json.loads(out.read_text())
    assert doc["format"] == "kd-edge-grid-check/1" and "isa_flags" in doc["host"]
    by_name = {m["name"]: m for m in doc["models"]}
    assert by_name["identity"]["grid_artifacts"]["clean"] is True
    assert by_name["painter"]["grid_artifacts"]["clean"] is False and by_name["painter"]["verified"] is True
    assert "real_photos" not in by_name["painter"]["grid_artifacts"]


def test_kd_edge_eval_reports_the_lattice_per_model(tmp_path):
    from kd_edge.data.synth import synthesize
    from kd_edge.report import stats
    from kd_edge.report.evaluate import csv_rows, evaluate

    synthesize(tmp_path / "set", count=4, size=128, seed=1, test_fraction=0.5)
    identity = identity_model(tmp_path / "identity.keras")
    painter = lattice_painter(tmp_path / "painter.keras", 8.0)
    result = evaluate(tmp_path / "set", [identity, painter], names=["identity", "painter"], baselines=False,
                      samples=0, progress=False)
    grid = stats.grid_artifacts(result)
    assert grid["identity"]["worst"] == 0.0 and grid["identity"]["period"] == 8
    assert grid["painter"]["worst"] == pytest.approx(8.0, rel=0.35) and grid["painter"]["visible"] == 2
    header, rows = csv_rows(result)
    grid_columns = [h for h in header if h.endswith("_added_grid_levels")]
    assert grid_columns == ["identity_added_grid_levels", "painter_added_grid_levels"] and len(rows) == 2
    assert stats.summarize(result)["grid_artifacts"] == grid
