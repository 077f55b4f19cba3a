"""Distillation library: losses, the Distiller, the trainer (resume, NaN guard, pruning callbacks, features).

Real TensorFlow, real files, tiny edge-tiny models on a tiny synthetic DBlur set (48 px, 32 px patches).
"""
import json

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from kd_edge.distill import losses
from kd_edge.distill.distiller import Distiller, pair_features
from kd_edge.distill.losses import LossWeights
from kd_edge.distill.trainer import train
from kd_edge.errors import KdEdgeError
from kd_edge.models import build

TINY = dict(batch=2, patch=32, val_count=2, val_crop=48, progress=False)


def _blurred(x):
    return tf.nn.avg_pool2d(x, 3, 1, "SAME")


def test_losses_are_zero_for_identical_images_and_grow_with_blur():
    rng = np.random.default_rng(0)
    sharp = tf.constant(rng.random((2, 32, 32, 3)), tf.float32)
    blur = _blurred(sharp)
    assert float(losses.l1(sharp, sharp)) == 0.0
    assert float(losses.charbonnier(sharp, sharp, eps=1e-3)) == pytest.approx(1e-3, rel=1e-3)
    assert float(losses.ssim_loss(sharp, sharp)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.frequency_loss(sharp, sharp)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.charbonnier(sharp, blur)) > 0.05
    assert float(losses.ssim_loss(sharp, blur)) > 0.1
    # blurring removes high frequencies: the amplitude spectra differ
    assert float(losses.frequency_loss(sharp, blur)) > 0.01
    # the orthonormal FFT scaling keeps the term independent of the patch size (white noise)
    big = tf.constant(rng.random((2, 64, 64, 3)), tf.float32)
    ratio = float(losses.frequency_loss(big, _blurred(big))) / float(losses.frequency_loss(sharp, blur))
    assert 0.7 < ratio < 1.4


def test_loss_weights_validate_and_drop_teacher_terms():
    with pytest.raises(ValueError):
        LossWeights(rec_type="l2")
    with pytest.raises(ValueError):
        LossWeights(kd=-1)
    alone = LossWeights(kd=0.7, feat=0.3).without_teacher()
    assert alone.kd == 0.0 and alone.feat == 0.0 and alone.rec == 1.0
    assert Distiller(build("edge-tiny")).loss_config.kd == 0.0


def test_pair_features_spreads_the_longer_list():
    assert pair_features(["a", "b"], ["x", "y", "z"]) == [("a", "x"), ("b", "z")]
    assert pair_features(["a", "b", "c"], ["x", "y", "z"]) == [("a", "x"), ("b", "y"), ("c", "z")]
    assert pair_features([], ["x"]) == []


def _batch(root, n=2, size=32):
    from kd_edge.data.pipeline import train_dataset

    ds = train_dataset(root / "train", patch=size, batch=n, seed=123, augment=False, repeat=True)
    return next(iter(ds))


def _loss_on(distiller, batch):
    x, y = batch
    t_out, t_feats = distiller._teacher_forward(x)
    s_out, s_feats = distiller._student_forward(x, training=False)
    total, _ = distiller.compute_terms(y, s_out, t_out, s_feats, t_feats)
    return float(total)


@pytest.mark.slow
def test_distillation_lowers_the_loss_and_exports_with_lineage(tiny_data, tmp_path):
    keras.utils.set_random_seed(1)
    teacher, student = build("edge-tiny", width=8), build("edge-tiny")
    batch = _batch(tiny_data)
    probe = Distiller(student, teacher)
    before = _loss_on(probe, batch)
    out = tmp_path / "run"
    path = train(student, teacher=teacher, data=tiny_data, out=out, steps=25, lr=3e-3, lr_schedule="constant",
                 val_every=25, seed=1, teacher_info={"sha256": "abc"}, **TINY)
    after = _loss_on(probe, batch)
    assert after < before * 0.9, (before, after)
    assert path == out / "model.keras" and path.is_file()
    manifest = json.loads((out / "model.keras.json").read_text())
    assert manifest["arch"] == "edge-tiny"
    step = manifest["lineage"][-1]
    assert step["method"] == "distill" and step["teacher"] == {"sha256": "abc"} and step["steps"] == 25
    assert step["losses"]["kd"] == 0.5
    info = json.loads((out / "train.json").read_text())
    assert info["seeds"][0]["seed"] == 1 and info["history"][-1]["step"] == 25
    assert info["segments"][-1]["status"] == "done"
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "ckpt" / "ckpt-25.index").is_file()


@pytest.mark.slow
def test_resume_continues_at_the_exact_step_with_optimizer_state(tiny_data, tmp_path):
    out = tmp_path / "run"
    keras.utils.set_random_seed(0)
    train(build("edge-tiny"), data=tiny_data, out=out, steps=4, ckpt_every=2, val_every=4, export=False, **TINY)
    reader = tf.train.load_checkpoint(str(out / "ckpt" / "ckpt-4"))
    assert int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == 4
    moments_at_4 = {k: reader.get_tensor(k) for k, _ in tf.train.list_variables(str(out / "ckpt" / "ckpt-4"))
                    if k.startswith("optimizer/_variables")}
    assert moments_at_4 and any(np.abs(v).sum() > 0 for v in moments_at_4.values())

    # a fresh process would rebuild the model from scratch: so do we
    student = build("edge-tiny")
    train(student, data=tiny_data, out=out, steps=7, ckpt_every=2, val_every=4, export=False, **TINY)
    info = json.loads((out / "train.json").read_text())
    second = info["segments"][-1]
    assert second["start_step"] == 4 and second["resumed_from"].endswith("ckpt-4")
    assert second["end_step"] == 7 and second["status"] == "done"
    assert [s["start_step"] for s in info["seeds"]] == [0, 4]
    reader = tf.train.load_checkpoint(str(out / "ckpt" / "ckpt-7"))
    assert int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == 7
    assert sorted(p.name for p in (out / "ckpt").glob("ckpt-*.index")) == ["ckpt-4.index", "ckpt-6.index",
                                                                          "ckpt-7.index"]


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KdEdgeError, match=r"loss became nan at step 5: .*ckpt-4"):
        train(build("edge-tiny"), data=tiny_data, out=out, steps=10, ckpt_every=2, val_every=10,
              debug_nan_at_step=5, **TINY)
    assert not (out / "ckpt" / "ckpt-5.index").exists() and not (out / "model.keras").exists()
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("ckpt-4")
    restored = build("edge-tiny")
    tf.train.Checkpoint(student=restored).restore(str(out / "ckpt" / "ckpt-4")).expect_partial()
    assert all(np.isfinite(w).all() for w in restored.get_weights())
    assert json.loads((out / "train.json").read_text())["segments"][-1]["status"] == "non-finite loss"


@pytest.mark.slow
def test_pruning_wrapped_student_fine_tunes_with_update_pruning_step(tiny_data, tmp_path):
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    base = build("edge-tiny")
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)

    def wrap(layer):
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer.__class__.from_config(layer.get_config())

    pruned = keras.models.clone_model(build("edge-tiny"), clone_function=wrap)
    result = train(pruned, teacher=base, data=tiny_data, out=tmp_path / "run", steps=4, val_every=2, export=False,
                   callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], **TINY)
    assert str(result).endswith(tuple(f"best-{s}" for s in (2, 4)))
    wrappers = [l for l in pruned.layers if isinstance(l, PruneLowMagnitude)]
    assert wrappers and all(int(l.pruning_step.numpy()) >= 3 for l in wrappers)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    kernels = [l.kernel.numpy() for l in stripped.layers
               if isinstance(l, keras.layers.Conv2D) and not isinstance(l, keras.layers.DepthwiseConv2D)]
    assert kernels and all(abs(float(np.mean(k == 0)) - 0.5) < 0.05 for k in kernels)


@pytest.mark.slow
def test_feature_distillation_trains_adapters(tiny_data, tmp_path):
    teacher, student = build("edge-tiny", width=8), build("edge-tiny")
    distiller = Distiller(student, teacher, weights=LossWeights(feat=0.5))
    assert distiller.adapters and len(distiller.adapters) == len(distiller.feature_pairs)
    x, y = _batch(tiny_data)
    t_out, t_feats = distiller._teacher_forward(x)
    s_out, s_feats = distiller._student_forward(x, training=False)
    _, terms = distiller.compute_terms(y, s_out, t_out, s_feats, t_feats)
    assert float(terms["feat"]) > 0
    train(student, teacher=teacher, data=tiny_data, out=tmp_path / "run", steps=3, val_every=3, export=False,
          weights=LossWeights(feat=0.5), **TINY)
    info = json.loads((tmp_path / "run" / "train.json").read_text())
    assert info["losses"]["feat"] == 0.5 and info["segments"][-1]["status"] == "done"
