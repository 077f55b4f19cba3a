"""Held-out scores are printed beside the blurred input's (and the parent's), reports carry them, and a resumed run
says where it resumes (issue 15, item 8). Real training of edge-tiny on a tiny synthetic set, the real CLI."""
import json

import numpy as np
import pytest

from kd_edge import metrics
from kd_edge.cli import main

TINY = ["--batch", "2", "--patch", "32", "--data"]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import tf_keras as keras

    from kd_edge.data.synth import synthesize
    from kd_edge.models import build, save_model

    root = tmp_path_factory.mktemp("heldout")
    synthesize(root / "data", count=8, size=48, seed=0)
    keras.utils.set_random_seed(0)
    save_model(build("edge-tiny"), root / "tiny.keras")
    return root


def test_prune_prints_and_reports_the_heldout_psnr_beside_parent_and_blurred_input(tiny, tmp_path, capsys):
    from kd_edge.distill.trainer import evaluate, load_validation_set
    from kd_edge.models import load_model

    out = _run(["prune", str(tiny / "tiny.keras"), "--filters", "0.25", "--steps", "2", *TINY, str(tiny / "data"),
                "--out", str(tmp_path / "pf")], capsys)
    report = json.loads((tmp_path / "pf" / "prune_report.json").read_text())
    h = report["heldout"]
    # recompute the parent's and the blurred input's scores on the same held-out crops, independently
    parent, _ = load_model(tiny / "tiny.keras")
    val = load_validation_set(tiny / "data", count=4, crop=256, stride=4)
    assert h["crops"] == len(val) > 0
    assert h["parent_psnr_db"] == pytest.approx(evaluate(parent, val)[0]["psnr"], abs=1e-4)
    assert h["blurred_input_psnr_db"] == pytest.approx(np.mean([metrics.psnr(b, s) for _, b, s in val]), abs=1e-4)
    assert h["vs_parent_db"] == pytest.approx(h["psnr_db"] - h["parent_psnr_db"])
    assert h["vs_blurred_input_db"] == pytest.approx(h["psnr_db"] - h["blurred_input_psnr_db"])
    line = next(x for x in out.splitlines() if "held-out PSNR after fine-tuning" in x)
    assert f"{h['psnr_db']:.2f} dB at step 2" in line
    assert f"blurred input {h['blurred_input_psnr_db']:.2f} dB" in line
    # the parent fine-tuned against itself: one figure, said once
    assert f"parent (also the teacher) {h['parent_psnr_db']:.2f} dB" in line and f"{len(val)} held-out crops" in line


def test_a_resumed_run_says_so_and_training_prints_the_blurred_input_beside_its_score(tiny, tmp_path, capsys):
    args = ["train-teacher", "--arch", "edge-tiny", *TINY, str(tiny / "data"), "--val-count", "2", "--val-crop", "48",
            "--no-progress", "--out", str(tmp_path / "run")]
    first = _run([*args, "--steps", "2"], capsys)
    assert "resuming" not in first
    info = json.loads((tmp_path / "run" / "train.json").read_text())
    best = info["best"]
    assert best["crops"] == 2 and best["blurred_psnr"] > 0
    flag = " - BELOW the blurred input" if best["psnr"] < best["blurred_psnr"] else ""
    assert (f"held-out PSNR {best['psnr']:.2f} dB at step {best['step']}{flag} "
            f"(blurred input {best['blurred_psnr']:.2f} dB; 2 held-out crops)") in first, first
    again = _run([*args, "--steps", "4"], capsys)
    assert f"resuming from step 2 of 4 (ckpt-2; --force starts over)" in again, again
    assert json.loads((tmp_path / "run" / "train.json").read_text())["segments"][-1]["start_step"] == 2


def test_distill_prints_the_teachers_heldout_score_beside_the_students(tiny, tmp_path, capsys):
    from kd_edge.distill.trainer import evaluate, load_validation_set
    from kd_edge.models import load_model

    out = _run(["distill", "--teacher", str(tiny / "tiny.keras"), "--student", "edge-tiny", *TINY, str(tiny / "data"),
                "--steps", "2", "--val-count", "2", "--val-crop", "48", "--no-progress", "--out", str(tmp_path / "d")],
               capsys)
    best = json.loads((tmp_path / "d" / "train.json").read_text())["best"]
    teacher, _ = load_model(tiny / "tiny.keras")
    val = load_validation_set(tiny / "data", count=2, crop=48, stride=4)
    assert best["teacher_psnr"] == pytest.approx(evaluate(teacher, val)[0]["psnr"], abs=1e-4)
    line = next(x for x in out.splitlines() if x.startswith("held-out PSNR"))
    assert f"blurred input {best['blurred_psnr']:.2f} dB; teacher {best['teacher_psnr']:.2f} dB" in line, line


@pytest.mark.slow
def test_qat_prints_its_heldout_figures_and_no_converter_noise(tiny, tmp_path, kd_edge_exe):
    import subprocess

    proc = subprocess.run([kd_edge_exe, "quantize", str(tiny / "tiny.keras"), "--qat", "--steps", "2", *TINY,
                           str(tiny / "data"), "--out", str(tmp_path / "q")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    h = json.loads((tmp_path / "q" / "quantize_report.json").read_text())["heldout"]
    line = next(x for x in proc.stdout.splitlines() if "held-out PSNR after fine-tuning" in x)
    assert f"blurred input {h['blurred_input_psnr_db']:.2f} dB" in line
    assert f"parent (also the teacher) {h['parent_psnr_db']:.2f} dB" in line
    assert "Warning:" not in proc.stderr, proc.stderr
    tflite = json.loads((tmp_path / "q" / "quantize_report.json").read_text()).get("tflite") or {}
    if tflite.get("target") == "tflite-int8":  # made by kd-edge convert's pipeline (issue 15 item 4), which is quiet
        for noise in ("fully_quantize", "XNNPACK delegate"):
            assert noise not in proc.stdout + proc.stderr, (noise, proc.stderr)


def test_validation_skips_untouched_pairs_whose_psnr_is_capped(tmp_path):
    """--identity pairs (blur == sharp) score 100 dB as input; the held-out crops leave them out, so one of them
    cannot lift the blurred input's mean or pick the best step."""
    from kd_edge.data.pipeline import eval_pairs
    from kd_edge.data.synth import synthesize
    from kd_edge.distill.trainer import load_validation_set

    synthesize(tmp_path / "d", count=24, size=32, seed=4, test_fraction=0.5, kernel_min=5, kernel_max=9, identity=0.4)
    held = list(eval_pairs(tmp_path / "d"))
    untouched = [name for name, b, s in held if np.array_equal(b, s)]
    assert 0 < len(untouched) < len(held) - 2  # the seed gives both kinds
    val = load_validation_set(tmp_path / "d", count=3, crop=32, stride=4)
    assert len(val) == 3 and not {name for name, _, _ in val} & set(untouched)
    assert max(metrics.psnr(b, s) for _, b, s in val) < 60
    assert [name for name, _, _ in val] == [name for name, b, s in held if not np.array_equal(b, s)][:3]
