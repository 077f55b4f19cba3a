"""kd-edge train-teacher / distill through the real console script: end to end, Ctrl-C + resume, mirrored."""
import json
import os
import signal
import subprocess
import time

import pytest

TINY = ["--batch", "2", "--patch", "32", "--val-count", "2", "--val-crop", "48", "--no-progress"]


def _run(exe, *args, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_train_teacher_then_distill_and_ablation_end_to_end(kd_edge_exe, tmp_path):
    teacher_dir = tmp_path / "teacher"
    r = _run(kd_edge_exe, "train-teacher", "--arch", "edge-tiny", "--data", "synth", "--synth-count", "8",
             "--synth-size", "48", "--steps", "4", "--val-every", "2", "--out", teacher_dir, *TINY)
    assert r.returncode == 0, r.stderr
    assert (teacher_dir / "data" / "train").is_dir()  # --data synth generated into <out>/data
    teacher_manifest = json.loads((teacher_dir / "model.keras.json").read_text())
    assert teacher_manifest["arch"] == "edge-tiny" and teacher_manifest["lineage"][-1]["method"] == "train-teacher"
    assert sorted(p.name for p in (teacher_dir / "ckpt").glob("ckpt-*.index")) == ["ckpt-2.index", "ckpt-4.index"]

    student_dir = tmp_path / "student"
    r = _run(kd_edge_exe, "distill", "--teacher", teacher_dir, "--student", "edge-tiny", "--data",
             teacher_dir / "data", "--steps", "3", "--w-feat", "0.1", "--w-kd", "0.7", "--out", student_dir, *TINY)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((student_dir / "model.keras.json").read_text())
    step = manifest["lineage"][-1]
    assert step["method"] == "distill" and step["teacher"]["sha256"] == teacher_manifest["sha256"]
    assert step["losses"]["kd"] == 0.7 and step["losses"]["feat"] == 0.1
    info = json.loads((student_dir / "train.json").read_text())
    assert info["command"].startswith("kd-edge distill --teacher")

    from kd_edge.models import load_model

    model, _ = load_model(student_dir / "model.keras")
    assert model.count_params() == teacher_manifest["params"]  # edge-tiny both

    # offline distillation: the teacher's outputs are computed once into the cache folder, then reused
    cache = tmp_path / "teacher-cache"
    for run, steps in (("offline", 2), ("offline-again", 1)):
        r = _run(kd_edge_exe, "distill", "--teacher", teacher_dir, "--student", "edge-tiny", "--data",
                 teacher_dir / "data", "--steps", steps, "--teacher-cache", cache, "--out", tmp_path / run, *TINY)
        assert r.returncode == 0, r.stderr
    first = json.loads((tmp_path / "offline" / "train.json").read_text())["teacher"]
    second = json.loads((tmp_path / "offline-again" / "train.json").read_text())["teacher"]
    assert first["sha256"] == teacher_manifest["sha256"] and first["cache"]["images"] == 6
    assert not first["cache"]["reused"] and second["cache"]["reused"]


def test_distill_usage_and_input_errors(kd_edge_exe, tmp_path):
    from kd_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["distill", "--data", "synth", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2  # --teacher or --no-teacher required
    with pytest.raises(SystemExit) as exc:
        main(["distill", "--teacher", str(tmp_path / "nope"), "--data", "synth", "--out", str(tmp_path / "x")])
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        main(["train-teacher", "--arch", "edge-tiny", "--data", str(tmp_path / "missing"), "--out",
              str(tmp_path / "y")])
    assert exc.value.code == 1


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_rerun_resumes_at_that_step(kd_edge_exe, tiny_data, tmp_path):
    out = tmp_path / "run"
    args = ["train-teacher", "--arch", "edge-tiny", "--data", tiny_data, "--val-every", "100000",
            "--ckpt-every", "3", "--out", out, *TINY]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([kd_edge_exe, *map(str, args), "--steps", "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    # Wall-clock limits only catch a hang: on a loaded 2-core host start-up (TF import, tracing, the first step's
    # graph optimisation) can take minutes, and Python delays a signal until the TensorFlow call running in the
    # main thread returns. So wait for training to be under way (never signal at an unknown point), then for
    # the exit; the trainer stops at the next step boundary, whatever the load.
    deadline = time.time() + 600
    while not (out / "ckpt" / "ckpt-3.index").is_file():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"training did not reach step 3 (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    time.sleep(2)  # a few more steps: the interrupt lands between periodic checkpoints
    signalled = time.time()
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"training did not exit within 600 s of SIGINT: {proc.communicate()[1][-2000:]}")
    assert proc.returncode == 130, stderr
    info = json.loads((out / "train.json").read_text())
    interrupted = info["segments"][-1]["end_step"]
    assert info["segments"][-1]["status"] == "interrupted" and interrupted >= 3
    assert f"interrupted at step {interrupted}" in stdout
    assert (out / "ckpt" / f"ckpt-{interrupted}.index").is_file()
    if interrupted % 3:  # not a periodic checkpoint: the interrupt itself wrote it
        assert (out / "ckpt" / f"ckpt-{interrupted}.index").stat().st_mtime >= signalled

    r = _run(kd_edge_exe, *args, "--steps", interrupted + 2)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "train.json").read_text())
    last = info["segments"][-1]
    assert last["start_step"] == interrupted and last["resumed_from"].endswith(f"ckpt-{interrupted}")
    assert last["end_step"] == interrupted + 2 and last["status"] == "done"
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(out / "ckpt" / f"ckpt-{interrupted + 2}"))
    assert int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == interrupted + 2


@pytest.mark.slow
def test_mirrored_strategy_trains_the_student_alone_on_two_cpu_replicas(kd_edge_exe, tiny_data, tmp_path):
    out = tmp_path / "run"
    r = _run(kd_edge_exe, "distill", "--no-teacher", "--student", "edge-tiny", "--data", tiny_data, "--steps", "3",
             "--strategy", "mirrored", "--cpu-replicas", "2", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "train.json").read_text())
    assert info["strategy"] == {"name": "MirroredStrategy", "replicas": 2}
    assert info["segments"][-1]["end_step"] == 3 and (out / "model.keras").is_file()
    # --no-teacher: the student-alone ablation, same losses minus the teacher terms
    step = json.loads((out / "model.keras.json").read_text())["lineage"][-1]
    assert step["method"] == "student-alone" and step["teacher"] is None
    assert step["losses"]["kd"] == 0.0 and step["losses"]["feat"] == 0.0 and step["losses"]["ssim"] == 0.2


def test_bfloat16_training_saves_a_float32_model_and_resumes_in_float32(kd_edge_exe, tiny_data, tmp_path):
    """--precision bfloat16 trains a mixed-bf16 copy (the CPU need not have bf16 units: then it is emulated) and
    saves the same float32 model a float32 run would; its checkpoint resumes in float32."""
    import numpy as np

    from kd_edge.models import load_model
    from kd_edge.models.precision import compute_dtype

    out = tmp_path / "run"
    r = _run(kd_edge_exe, "train-teacher", "--arch", "edge-tiny", "--data", tiny_data, "--steps", "3",
             "--precision", "bfloat16", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    model, manifest = load_model(out / "model.keras")
    assert compute_dtype(model) == "float32" and all(v.dtype == "float32" for v in model.weights)
    assert manifest["lineage"][-1]["precision"] == ["bfloat16"]
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    first = model.predict(x, verbose=0)
    assert np.isfinite(first).all()
    r = _run(kd_edge_exe, "train-teacher", "--arch", "edge-tiny", "--data", tiny_data, "--steps", "5",
             "--precision", "float32", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "train.json").read_text())
    assert [(s["start_step"], s["precision"]) for s in info["segments"]] == [(0, "bfloat16"), (3, "float32")]
    resumed, manifest = load_model(out / "model.keras")
    assert manifest["lineage"][-1]["precision"] == ["bfloat16", "float32"] and info["segments"][-1]["end_step"] == 5
    assert not np.array_equal(resumed.predict(x, verbose=0), first)  # it trained on from the bf16 weights


def test_precision_copy_computes_in_bf16_except_the_output_and_keeps_the_weights():
    import numpy as np
    import tf_keras as keras

    from kd_edge.models import build
    from kd_edge.models import precision

    keras.utils.set_random_seed(1)
    model = build("edge-tiny")
    copy = precision.with_precision(model, "bfloat16")
    assert precision.compute_dtype(model) == "float32" and precision.compute_dtype(copy) == "bfloat16"
    assert copy.layers[-1].dtype_policy.compute_dtype == "float32" and copy.output.dtype == "float32"
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), copy.get_weights()))
    x = np.random.default_rng(2).random((1, 32, 32, 3)).astype(np.float32)
    y32, y16 = model.predict(x, verbose=0), copy.predict(x, verbose=0)
    assert 0 < np.abs(y32 - y16).max() < 0.05  # bf16 arithmetic: close, not equal
    back = precision.with_precision(copy, "float32")
    assert np.array_equal(back.predict(x, verbose=0), y32)
    assert precision.with_precision(model, "float32") is model
    assert precision.resolve("auto") == ("bfloat16" if precision.cpu_bf16_flags() else "float32")
    with pytest.raises(ValueError, match="--precision"):
        precision.resolve("fp8")


def test_export_step_writes_any_kept_checkpoint_with_the_runs_lineage(kd_edge_exe, tiny_data, tmp_path):
    import numpy as np

    from kd_edge.models import load_model

    run = tmp_path / "run"
    r = _run(kd_edge_exe, "train-teacher", "--arch", "edge-tiny", "--data", tiny_data, "--steps", "4",
             "--val-every", "2", "--lr", "3e-3", "--out", run, *TINY)
    assert r.returncode == 0, r.stderr
    listed = _run(kd_edge_exe, "export-step", run)
    assert listed.returncode == 0 and [line.split(":")[0] for line in listed.stdout.splitlines()] == ["step 2", "step 4"]
    best, manifest = load_model(run / "model.keras")
    best_step = manifest["lineage"][-1]["best_step"]
    exported = {}
    for step in (2, 4):
        r = _run(kd_edge_exe, "export-step", run, "--step", step, "--out", tmp_path / f"s{step}.keras")
        assert r.returncode == 0, r.stderr
        exported[step], m = load_model(tmp_path / f"s{step}.keras")
        assert m["lineage"][-1]["exported_step"] == step and m["validation"]["step"] == step
        assert m["lineage"][:-1] == manifest["lineage"][:-1] and m["arch"] == "edge-tiny"
    same = [all(np.array_equal(a, b) for a, b in zip(exported[s].get_weights(), best.get_weights())) for s in (2, 4)]
    assert same == [best_step == 2, best_step == 4]  # the run's pick is one of them, the other step differs
    r = _run(kd_edge_exe, "export-step", run, "--step", "3", "--out", tmp_path / "s3.keras")
    assert r.returncode == 1 and "no checkpoint of step 3; kept: 2, 4" in r.stderr and not (tmp_path / "s3.keras").exists()
    before = (run / "model.keras").read_bytes()
    r = _run(kd_edge_exe, "export-step", run, "--step", "2", "--out", run / "model.keras", "--force")
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr and (run / "model.keras").read_bytes() == before


def test_a_run_records_its_attention_and_a_run_from_before_bounded_attention_resumes_as_it_was(
        kd_edge_exe, tiny_data, tmp_path):
    """Fresh edge-* builds bound their channel attention; a checkpoint of a run started before that (its train.json
    has no "attention") resumes into NAFNet's linear attention, the network its weights were trained in."""
    from kd_edge.models import load_model
    from kd_edge.models.attention_bound import attention_form

    out = tmp_path / "run"
    r = _run(kd_edge_exe, "train-teacher", "--arch", "edge-tiny", "--data", tiny_data, "--steps", "2", "--out", out,
             *TINY)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "train.json").read_text())
    assert info["run"]["attention"] == "tanh"
    assert attention_form(load_model(out / "model.keras")[0]) == "tanh"
    del info["run"]["attention"]  # what a kd-edge from before the bounded attention wrote
    (out / "train.json").write_text(json.dumps(info))
    r = _run(kd_edge_exe, "train-teacher", "--arch", "edge-tiny", "--data", tiny_data, "--steps", "3", "--out", out,
             *TINY)
    assert r.returncode == 0, r.stderr
    model, manifest = load_model(out / "model.keras")
    assert attention_form(model) == "linear" and manifest["config"]["attention"] == "linear"
    assert json.loads((out / "train.json").read_text())["run"]["attention"] == "linear"
