"""Compression: real filter removal, tfmot sparsity, QAT (+ fallback for unsupported layers), PTQ, lineage, CLI."""
import json

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from kd_edge.compress import filter_pruning, qat, runs, sparsity
from kd_edge.models import build, count_macs, count_params, load_model, save_model


@keras.utils.register_keras_serializable(package="kd_edge_test")
class ChannelScale(keras.layers.Layer):
    """A registered custom layer with weights and no QuantizeConfig: QAT must leave it in float."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", shape=(input_shape[-1],), initializer="ones")
        super().build(input_shape)

    def call(self, inputs):
        return inputs * self.scale


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = build("edge-tiny")
    # make the filters differ in magnitude so that L1 ranking has something to rank
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in layer.get_weights()])
    path = tmp_path_factory.mktemp("parent") / "tiny.keras"
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from kd_edge.data.synth import synthesize

    root = tmp_path_factory.mktemp("data") / "synth"
    synthesize(root, count=6, size=64, seed=0)
    return root


def _x(size, n=1, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


# ------------------------------------------------------------------------------------------- filter pruning
def test_filter_pruning_is_exact_removal_of_zeroed_channels(tiny_path):
    """Zeroing the producers of the removed channels in the parent gives exactly the pruned model's output."""
    parent, _ = load_model(tiny_path)
    plan = filter_pruning.plan_filter_pruning(parent, 0.25)
    pruned = filter_pruning.apply_plan(parent, plan)
    zeroed = keras.models.clone_model(parent)
    zeroed.set_weights(parent.get_weights())
    for layer in zeroed.layers:
        key = (layer.name, 0, 0)
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D") or key not in plan.kept:
            continue
        drop = sorted(set(range(plan.channels[key])) - set(plan.kept[key]))
        weights = layer.get_weights()
        if kind == "Conv2D":
            weights[0][..., drop] = 0.0
        else:
            weights[0][:, :, drop, :] = 0.0
        if len(weights) > 1:
            weights[1][drop] = 0.0
        layer.set_weights(weights)
    x = _x(32, 2)
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(zeroed(x)), atol=2e-5)
    # and the removal changed something (the test would be vacuous otherwise)
    assert np.abs(np.asarray(pruned(x)) - np.asarray(parent(x))).max() > 1e-4


def test_filter_pruning_channel_counts_and_sizes(tiny_path):
    parent, _ = load_model(tiny_path)
    pruned, plan = filter_pruning.prune_filters(parent, 0.25)
    widths = {row["layer"]: row["after"] for row in plan.layers}
    # edge-tiny: width 4 -> 3, 8 -> 6, 16 -> 12; SimpleGate inputs stay even; depth_to_space inputs stay x4
    assert widths["intro"] == 3 and widths["down0"] == 6 and widths["down1"] == 12
    assert widths["enc0_b0_pw1"] == 6 and widths["enc0_b0_sca_conv"] == 3 and widths["enc0_b0_ffn1"] == 6
    assert widths["middle_b0_pw1"] == 24 and widths["up1_conv"] == 24 and widths["up0_conv"] == 12
    assert widths["ending"] == 3  # the output is never pruned
    assert pruned.get_layer("enc0_b0_pw1").kernel.shape[-2:] == (3, 6)
    # residual stream shares one kept set: intro and the block's last conv keep the same channels
    assert plan.kept[("intro", 0, 0)] == plan.kept[("enc0_b0_pw2", 0, 0)] == plan.kept[("up0_shuffle", 0, 0)]
    # SimpleGate halves keep matching pairs (k, k + C/2)
    kept = plan.kept[("enc0_b0_pw1", 0, 0)]
    half = plan.channels[("enc0_b0_pw1", 0, 0)] // 2
    assert [k + half for k in kept if k < half] == [k for k in kept if k >= half]
    # depth_to_space: groups {k * C_out + c} kept together
    shuffle_out = plan.kept[("up0_shuffle", 0, 0)]
    c_out = plan.channels[("up0_shuffle", 0, 0)]
    assert plan.kept[("up0_conv", 0, 0)] == [k * c_out + c for k in range(4) for c in shuffle_out]
    assert count_params(pruned) < count_params(parent)
    assert count_macs(pruned, 64, 64) < 0.8 * count_macs(parent, 64, 64)
    for size in ((32, 32), (48, 64)):  # any multiple of the stride (4)
        y = pruned(np.zeros((1, *size, 3), np.float32))
        assert y.shape == (1, *size, 3)


def test_filter_pruning_refuses_wrapped_models(tiny_path):
    parent, _ = load_model(tiny_path)
    wrapped = sparsity.wrap_for_pruning(parent, sparsity.make_schedule("constant", 0.5, 10))
    with pytest.raises(kd_edge.errors.KdEdgeError, match="tfmot wrapper"):
        filter_pruning.plan_filter_pruning(wrapped, 0.2)


@pytest.mark.slow
def test_run_filters_fine_tunes_and_records_lineage(tiny_path, data_root, tmp_path):
    report = runs.run_filters(tiny_path, tmp_path / "pf", ratio=0.25, steps=2, data=str(data_root), batch=2,
                              patch=32, progress=False)
    model, manifest = load_model(tmp_path / "pf" / "model.keras")
    parent_manifest = json.loads((tiny_path.parent / "tiny.keras.json").read_text())
    step = manifest["lineage"][-1]
    assert step["method"] == "prune-filters" and step["steps"] == 2
    assert step["parent"]["sha256"] == parent_manifest["sha256"]
    assert step["settings"]["filters"] == 0.25 and step["channels"]["intro"] == 3
    assert manifest["params"] == report["complexity"]["pruned"]["params"] < parent_manifest["params"]
    assert report["complexity"]["macs_drop"] >= 0.2
    assert json.loads((tmp_path / "pf" / "prune_report.json").read_text())["method"] == "filters"
    assert model(np.zeros((1, 40, 24, 3), np.float32)).shape == (1, 40, 24, 3)
    with pytest.raises(kd_edge.errors.KdEdgeError, match="already exists"):
        runs.run_filters(tiny_path, tmp_path / "pf", ratio=0.25, steps=0)


# ------------------------------------------------------------------------------------------- sparsity
@pytest.mark.slow
def test_run_sparsity_prunes_strips_and_reports(tiny_path, data_root, tmp_path):
    report = runs.run_sparsity(tiny_path, tmp_path / "ps", sparsity=0.5, schedule="constant", steps=3,
                               data=str(data_root), batch=2, patch=32, progress=False)
    model, manifest = load_model(tmp_path / "ps" / "model.keras")
    assert not any(type(layer).__name__ == "PruneLowMagnitude" for layer in model.layers)  # stripped
    assert report["sparsity"]["pruned_kernels"] == pytest.approx(0.5, abs=0.05)
    pw = np.asarray(model.get_layer("enc0_b0_pw1").kernel)
    assert 0.4 <= np.mean(pw == 0) <= 0.6
    assert report["size"]["pruned_weights"]["gzip_bytes"] < report["size"]["parent_weights"]["gzip_bytes"]
    assert report["size"]["pruned_weights"]["raw_bytes"] == report["size"]["parent_weights"]["raw_bytes"]
    assert "not make dense kernels faster" in report["speed_note"]
    assert manifest["lineage"][-1]["method"] == "prune-sparsity"
    assert manifest["lineage"][-1]["settings"]["schedule"] == "constant"


def test_polynomial_schedule_reaches_target():
    schedule = sparsity.make_schedule("polynomial", 0.6, 100)
    assert schedule.end_step == 70 and schedule.final_sparsity == 0.6
    with pytest.raises(kd_edge.errors.KdEdgeError):
        sparsity.make_schedule("cubic", 0.5, 10)


# ------------------------------------------------------------------------------------------- quantization
def _model_with_unsupported_layer():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    x = ChannelScale(name="scale")(x)
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv_b")(x)
    outputs = keras.layers.Add(name="residual")([inputs, x])
    return keras.Model(inputs, outputs)


def test_unsupported_layer_stays_float():
    model = _model_with_unsupported_layer()
    plan = {row["layer"]: row for row in qat.quantize_plan(model)}
    assert plan["scale"]["quantized"] is False and "stays float" in plan["scale"]["why"]
    assert plan["conv_a"]["quantized"] and plan["residual"]["quantized"]
    qmodel, info = qat.quantize_model(model)  # no exception
    assert info["float_layers"] == ["scale"]
    assert type(qmodel.get_layer("scale")).__name__ == "ChannelScale"
    assert type(qmodel.get_layer("quant_conv_a")).__name__.startswith("QuantizeWrapper")
    x = _x(16, 2)
    for _ in range(3):
        qmodel(x, training=True)
    content = qat.export_int8_tflite(qmodel, None, calib_count=2, input_size=16)
    out = runs.run_tflite(content, x)
    assert out.shape == (2, 16, 16, 3) and np.isfinite(out).all()


@pytest.mark.slow
def test_run_qat_converts_to_full_int8_close_to_float(tiny_path, data_root, tmp_path):
    report = runs.run_qat(tiny_path, tmp_path / "q", steps=2, data=str(data_root), batch=2, patch=16,
                          progress=False, calib_count=4, input_size=32)
    assert report["settings"]["scheme"] == "Default8BitQuantizeScheme"  # dense parent
    qmodel, manifest = load_model(tmp_path / "q" / "model.keras")  # a QAT .keras file loads back
    assert any(type(layer).__name__.startswith("QuantizeWrapper") for layer in qmodel.layers)
    assert manifest["lineage"][-1]["method"] == "qat"
    parent, _ = load_model(tiny_path)
    content = (tmp_path / "q" / "model.tflite-int8.tflite").read_bytes()
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=content)
    interp.allocate_tensors()
    conv_types = {d["dtype"] for d in interp.get_tensor_details() if "Conv2D" in d["name"] and
                  "bias" not in d["name"].lower()}
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert "CONV_2D" in ops and "DEPTH_TO_SPACE" in ops
    assert np.int8 in conv_types
    x = _x(32, 2, seed=5) * 0.8 + 0.1
    out = runs.run_tflite(content, x)
    ref = np.asarray(parent(x))
    from kd_edge.metrics import psnr

    assert np.mean([psnr(np.clip(o, 0, 1), np.clip(r, 0, 1)) for o, r in zip(out, ref)]) > 25.0
    parity = report["tflite"]["parity"]
    assert report["tflite"]["written"] and parity["passed"] and parity["threshold_db"] == 30.0
    # one gate, one number: convert of the saved QAT model measures exactly what quantize recorded
    from kd_edge.converters import convert

    results = convert(tmp_path / "q" / "model.keras", ["tflite-int8"], tmp_path / "conv", input_size=32,
                      calib_count=4)
    assert len(results) == 1 and list((tmp_path / "conv").glob("*.tflite"))
    assert results[0].manifest["parity"]["psnr_db"] == pytest.approx(parity["psnr_db"], abs=1e-6)


def test_prune_preserving_qat_is_chosen_for_sparse_models(tiny_path):
    parent, _ = load_model(tiny_path)
    weights = parent.get_weights()
    for layer in parent.layers:
        if type(layer).__name__ == "Conv2D":
            k = layer.kernel.numpy()
            k[np.abs(k) < np.median(np.abs(k))] = 0.0
            layer.kernel.assign(k)
    assert qat.is_sparse(parent)
    qmodel, info = qat.quantize_model(parent)
    assert info["scheme"] == "Default8BitPrunePreserveQuantizeScheme"
    del weights, qmodel


def test_ptq_int8_with_calibration(tiny_path, data_root, tmp_path):
    report = runs.run_ptq(tiny_path, tmp_path / "ptq", calib=str(data_root / "train"), calib_count=3,
                          input_size=32)
    path = tmp_path / "ptq" / "tiny.tflite-int8.tflite"  # what `kd-edge convert tiny.keras -t tflite-int8` writes
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    assert manifest["target"] == "tflite-int8" and manifest["parity"]["passed"]
    assert report["parent"]["sha256"] == manifest["source_model"]["sha256"]
    assert report["tflite"]["calibration"]["images"] == 3
    assert report["tflite"]["parity"]["psnr_db"] == manifest["parity"]["psnr_db"] >= 30.0


# ------------------------------------------------------------------------------------------- CLI
def test_cli_quantize_check_lists_every_layer(tmp_path, capsys):
    from kd_edge.cli import main

    path = tmp_path / "odd.keras"
    save_model(_model_with_unsupported_layer(), path)
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "--check", str(path), "--json", str(tmp_path / "check.json")])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "scale" in out and "stays float" in out and "conv_a" in out
    check = json.loads((tmp_path / "check.json").read_text())
    assert check["float_layers"] == ["scale"] and len(check["layers"]) == 5


def test_cli_usage_errors(tiny_path, tmp_path):
    from kd_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["prune", str(tiny_path), "--sparsity", "0.5", "--filters", "0.2", "--out", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["quantize", str(tiny_path), "--qat"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["prune", str(tmp_path / "missing.keras"), "--filters", "0.2", "--steps", "0", "--out", str(tmp_path)])
    assert exc.value.code == 1


def test_cli_prune_filters_without_fine_tuning(tiny_path, tmp_path, capsys):
    from kd_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["prune", str(tiny_path), "--filters", "0.25", "--steps", "0", "--out", str(tmp_path / "o")])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "params 5,519 ->" in out and "MACs@256" in out
    model, manifest = load_model(tmp_path / "o" / "model.keras")
    assert manifest["lineage"][-1]["steps"] == 0
    assert tf.reduce_all(tf.math.is_finite(model(np.zeros((1, 32, 32, 3), np.float32))))
