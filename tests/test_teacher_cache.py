"""Offline distillation: the teacher-output cache, its pipeline and training from it (real TF, real files)."""
import json
import os
import subprocess

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from kd_edge.data.dblur import find_pairs
from kd_edge.data.pipeline import train_dataset
from kd_edge.distill import teacher_cache
from kd_edge.distill.distiller import Distiller
from kd_edge.distill.trainer import train
from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.images import read_image, write_image
from kd_edge.models import build


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from kd_edge.data.synth import synthesize

    root = tmp_path_factory.mktemp("tinysynth_cache") / "data"
    synthesize(root, count=8, size=48, seed=3)
    return root


def _pointwise_teacher():
    """A per-pixel teacher (1x1 convolutions): its output on a crop is the crop of its output on the image, so
    the cached and the online distillation terms must agree exactly."""
    keras.utils.set_random_seed(5)
    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 1, activation="relu")(x)
    y = keras.layers.Add()([x, keras.layers.Conv2D(3, 1)(h)])
    return keras.Model(x, y, name="pointwise")


def test_cache_holds_the_teacher_output_of_each_whole_image_and_is_reused(tiny_data, tmp_path):
    teacher = _pointwise_teacher()
    cache = tmp_path / "cache"
    info = teacher_cache.build(teacher, tiny_data / "train", cache, teacher_sha256="a" * 64, progress=False)
    pairs = find_pairs(tiny_data / "train")
    assert info["images"] == len(pairs) == 6 and not info["reused"]
    for p in pairs:
        blur = read_image(p.blur).rgb
        expected = np.clip(np.asarray(teacher(blur[None]))[0], 0, 1)
        stored = read_image(cache / teacher_cache.output_name(p))
        assert stored.bit_depth == 16
        np.testing.assert_allclose(stored.rgb, expected, atol=1 / 65535 + 1e-6)
    meta = json.loads((cache / "cache.json").read_text())
    assert meta["teacher_sha256"] == "a" * 64 and len(meta["files"]) == 6

    again = teacher_cache.build(teacher, tiny_data / "train", cache, teacher_sha256="a" * 64, progress=False)
    assert again["reused"] and again["seconds"] == 0.0
    # another teacher, or a changed training image, makes it stale
    assert not teacher_cache.is_current(cache, "b" * 64, pairs)
    os.utime(pairs[0].blur, ns=(1, 1))
    assert not teacher_cache.is_current(cache, "a" * 64, pairs)
    rebuilt = teacher_cache.build(teacher, tiny_data / "train", cache, teacher_sha256="a" * 64, progress=False)
    assert not rebuilt["reused"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputFileError, match="cannot create the teacher cache"):
        teacher_cache.build(teacher, tiny_data / "train", tmp_path / "a-file" / "cache", teacher_sha256="a" * 64,
                            progress=False)
    with pytest.raises(KdEdgeError, match="sha256"):
        teacher_cache.build(teacher, tiny_data / "train", tmp_path / "other", teacher_sha256=None, progress=False)


def test_pipeline_crops_rotates_and_flips_the_teacher_output_with_the_pair(tiny_data, tmp_path):
    # a "teacher output" that is the sharp image itself: every triple must then carry t == sharp
    cache = tmp_path / "sharp-as-teacher"
    cache.mkdir()
    for p in find_pairs(tiny_data / "train"):
        write_image(cache / teacher_cache.output_name(p), read_image(p.sharp).rgb, bit_depth=16)
    with_teacher = iter(train_dataset(tiny_data / "train", patch=32, batch=4, seed=11, augment=True,
                                      teacher_dir=cache))
    plain = iter(train_dataset(tiny_data / "train", patch=32, batch=4, seed=11, augment=True))
    for _ in range(5):
        x, y, t = next(with_teacher)
        x0, y0 = next(plain)
        np.testing.assert_allclose(t.numpy(), y.numpy(), atol=1e-6)
        np.testing.assert_array_equal(x.numpy(), x0.numpy())  # the same crops as without a cache

    (cache / teacher_cache.output_name(find_pairs(tiny_data / "train")[0])).unlink()
    with pytest.raises(InputFileError, match="missing from the teacher cache"):
        train_dataset(tiny_data / "train", patch=32, batch=8, seed=0, teacher_dir=cache)


def test_cached_distillation_terms_equal_the_online_ones(tiny_data, tmp_path):
    teacher = _pointwise_teacher()
    cache = tmp_path / "cache"
    teacher_cache.build(teacher, tiny_data / "train", cache, teacher_sha256="c" * 64, progress=False)
    student = build("edge-tiny")
    online = Distiller(student, teacher)
    cached = Distiller(student, cached_teacher=True)
    assert cached.loss_config.kd == online.loss_config.kd == 0.5
    x, y, t = next(iter(train_dataset(tiny_data / "train", patch=32, batch=4, seed=2, augment=False,
                                      teacher_dir=cache)))
    s_out = student(x, training=False)
    t_online, _ = online._teacher_forward(x)
    _, terms_online = online.compute_terms(y, s_out, tf.clip_by_value(t_online, 0, 1))
    _, terms_cached = cached.compute_terms(y, s_out, t)
    assert float(terms_cached["kd"]) > 0
    assert float(terms_cached["kd"]) == pytest.approx(float(terms_online["kd"]), abs=2e-5)
    with pytest.raises(KdEdgeError, match="feature distillation"):
        Distiller(build("edge-tiny"), cached_teacher=True, kd=0.5, feat=0.1)


@pytest.mark.slow
def test_training_from_a_cache_runs_without_the_teacher_and_records_it(tiny_data, tmp_path):
    teacher = build("edge-tiny", width=8)
    out, cache = tmp_path / "run", tmp_path / "cache"
    path = train(build("edge-tiny"), teacher=teacher, teacher_cache=cache, data=tiny_data, out=out, steps=6,
                 val_every=3, seed=0, batch=2, patch=32, val_count=2, val_crop=48, progress=False,
                 teacher_info={"sha256": "d" * 64})
    info = json.loads((out / "train.json").read_text())
    assert info["teacher"]["cache"]["images"] == 6 and not info["teacher"]["cache"]["reused"]
    assert info["losses"]["kd"] == 0.5 and info["segments"][-1]["status"] == "done"
    manifest = json.loads(path.with_name("model.keras.json").read_text())
    assert manifest["lineage"][-1]["method"] == "distill"
    assert len(list(cache.glob("*.png"))) == 6
    with pytest.raises(KdEdgeError, match="needs the teacher"):
        train(build("edge-tiny"), teacher_cache=cache, data=tiny_data, out=tmp_path / "x", steps=1,
              batch=2, patch=32, progress=False)


def test_cli_refuses_a_cache_without_output_distillation(kd_edge_exe, tiny_data, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([kd_edge_exe, "distill", "--no-teacher", "--teacher-cache", str(tmp_path / "c"), "--data",
                        str(tiny_data), "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "--teacher-cache" in r.stderr
