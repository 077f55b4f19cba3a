"""Errors a new user hits (issue 15, items 6, 7, 10): one line naming the path and the problem, the documented exit
codes, checks before anything heavy loads, and quiet converters. Real files, a real tiny model, the real CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kd_edge.cli import main
from kd_edge.images import write_image


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _errors(err):
    return [line for line in err.splitlines() if line.startswith("kd-edge: error:")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """edge-tiny (stride 4) as .keras, one 40x52 image, a 2-pair DBlur split."""
    import tf_keras as keras

    from kd_edge.models import build, save_model

    root = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(0)
    save_model(build("edge-tiny"), root / "tiny.keras")
    rng = np.random.default_rng(0)
    write_image(root / "img.png", rng.random((40, 52, 3)).astype(np.float32))
    for sub in ("blur", "sharp"):
        (root / "pairs" / sub).mkdir(parents=True)
    for name in ("a.png", "b.png"):
        sharp = rng.random((32, 32, 3)).astype(np.float32)
        write_image(root / "pairs" / "sharp" / name, sharp)
        write_image(root / "pairs" / "blur" / name, (sharp + np.roll(sharp, 1, axis=1)) / 2)
    return root


# ------------------------------------------------------------------------------------------ item 6: tile vs stride
def test_deblur_tile_not_a_multiple_of_the_stride_is_one_line(tiny, tmp_path, capsys):
    code, out, err = _run(["deblur", str(tiny / "img.png"), "--model", str(tiny / "tiny.keras"),
                           "--out", str(tmp_path / "o"), "--tile", "30", "--overlap", "8"], capsys)
    assert code == 1
    assert _errors(err) == ["kd-edge: error: tiny.keras: tile 30 is not a multiple of the model's stride 4: "
                            "use e.g. 28 or 32"], err
    assert "InvalidArgumentError" not in err and not (tmp_path / "o" / "img.png").exists()
    code, out, err = _run(["deblur", str(tiny / "img.png"), "--model", str(tiny / "tiny.keras"),
                           "--out", str(tmp_path / "o"), "--tile", "32", "--overlap", "8"], capsys)
    assert code == 0, err
    assert (tmp_path / "o" / "img.png").exists()


def test_eval_tile_not_a_multiple_of_the_stride_is_one_line(tiny, tmp_path, capsys):
    code, out, err = _run(["eval", "--data", str(tiny / "pairs"), str(tiny / "tiny.keras"), "--tile", "30",
                           "--out", str(tmp_path / "r"), "--samples", "0"], capsys)
    assert code == 1
    errors = _errors(err)
    assert len(errors) == 1 and "tile 30 is not a multiple of the model's stride 4" in errors[0], err
    assert "InvalidArgumentError" not in err and "failed on" not in err  # checked once, before any image


# ------------------------------------------------------------------------------------------ item 7: output folders
@pytest.mark.parametrize("out, problem", [
    ("afile/sub", "{tmp}/afile is a file, not a folder"),
    ("afile", "is a file, not a folder"),
    ("/proc/nope", "cannot create the folder"),
])
def test_deblur_output_folder_is_checked_before_the_model_loads(tiny, tmp_path, capsys, out, problem):
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "broken.keras").write_bytes(b"not a model")  # loading it would fail with another message
    target = out if out.startswith("/") else str(tmp_path / out)
    code, _, err = _run(["deblur", str(tiny / "img.png"), "--model", str(tmp_path / "broken.keras"),
                         "--out", target], capsys)
    assert code == 1
    errors = _errors(err)
    problem = problem.format(tmp=tmp_path)
    assert len(errors) == 1 and errors[0].startswith(f"kd-edge: error: {target}: {problem}"), err
    assert "Error:" not in err.replace("kd-edge: error:", "") and "Errno" not in err


def test_convert_and_eval_check_their_output_folder_first(tiny, tmp_path, capsys):
    (tmp_path / "broken.keras").write_bytes(b"not a model")
    code, _, err = _run(["convert", str(tmp_path / "broken.keras"), "-t", "tflite-fp32", "--out", "/proc/kdx"],
                        capsys)
    assert code == 1 and _errors(err) == [
        "kd-edge: error: /proc/kdx: cannot create the folder (no such file or directory)"], err
    (tmp_path / "afile").write_text("a file")
    code, _, err = _run(["eval", "--data", str(tiny / "pairs"), str(tmp_path / "broken.keras"),
                         "--out", str(tmp_path / "afile" / "r")], capsys)
    assert code == 1 and _errors(err) == [
        f"kd-edge: error: {tmp_path / 'afile' / 'r'}: {tmp_path / 'afile'} is a file, not a folder "
        "(--out must be a folder)"], err


@pytest.mark.parametrize("argv", [
    ["train-teacher", "--arch", "edge-tiny", "--data", "{pairs}", "--steps", "1", "--out", "{out}"],
    ["distill", "--student", "edge-tiny", "--no-teacher", "--data", "{pairs}", "--steps", "1", "--out", "{out}"],
    ["prune", "{model}", "--filters", "0.25", "--steps", "1", "--data", "{pairs}", "--out", "{out}"],
    ["quantize", "{model}", "--qat", "--steps", "1", "--data", "{pairs}", "--out", "{out}"],
    ["data", "synth", "{out}", "--count", "2", "--size", "32"],
], ids=lambda argv: " ".join(argv[:2]))
def test_every_command_names_an_output_folder_it_cannot_use(tiny, tmp_path, capsys, argv):
    (tmp_path / "afile").write_text("a file")
    out = tmp_path / "afile" / "sub"
    argv = [a.format(out=out, pairs=tiny / "pairs", model=tiny / "tiny.keras") for a in argv]
    code, _, err = _run(argv, capsys)
    assert code == 1, err
    assert _errors(err) == [f"kd-edge: error: {out}: {tmp_path / 'afile'} is a file, not a folder"
                            + (" (--out must be a folder)" if "--out" in argv else "")], err
    assert not (tmp_path / "afile").is_dir()


def test_an_os_error_on_an_output_file_is_one_line_naming_it(tmp_path, capsys):
    code, _, err = _run(["models", "edge-tiny", "--json", "/proc/kdx/models.json"], capsys)
    assert code == 1 and _errors(err) == ["kd-edge: error: /proc/kdx: no such file or directory"], err


# ------------------------------------------------------------------------------------------ item 7: exit codes
MISSING = "nosuch-input"


@pytest.mark.parametrize("argv", [
    ["deblur", MISSING + ".png", "--out", "{tmp}/o"],
    ["deblur", "{img}", "--model", MISSING + ".keras", "--out", "{tmp}/o"],
    ["eval", "--data", "{pairs}", MISSING + ".keras", "--out", "{tmp}/r"],
    ["eval", "--data", MISSING, "--out", "{tmp}/r"],
    ["convert", MISSING + ".keras", "-t", "tflite-fp32", "--out", "{tmp}/e"],
    ["convert", "{model}", "-t", "tflite-int8", "--calib", MISSING, "--out", "{tmp}/e"],
    ["data", "check", MISSING],
    ["data", "synth", MISSING, "{tmp}/s"],
    ["data", "synth", "--from-json", MISSING + ".json", "{tmp}/s"],
    ["quantize", "--check", MISSING + ".keras"],
    ["prune", MISSING + ".keras", "--sparsity", "0.5", "--out", "{tmp}/p"],
    ["distill", "--teacher", MISSING + ".keras", "--data", "{pairs}", "--out", "{tmp}/d"],
    ["bench", MISSING + ".tflite"],
    ["run", "--model", MISSING + ".keras", "--out", "{tmp}/run"],
], ids=lambda argv: " ".join(a for a in argv[:3] if "{" not in a))
def test_a_missing_input_is_exit_1_with_one_line_everywhere(tiny, tmp_path, capsys, argv):
    """The documented rule (README, Commands): a missing input is a bad file, exit 1, one line naming it."""
    argv = [a.format(tmp=tmp_path, img=tiny / "img.png", pairs=tiny / "pairs", model=tiny / "tiny.keras")
            for a in argv]
    code, _, err = _run(argv, capsys)
    assert code == 1, err
    errors = _errors(err)
    assert len(errors) == 1 and MISSING in errors[0], err
    assert "Usage:" not in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["convert", "-t", "nosuch", "--out", "x"],
    ["deblur", "a.png", "--out", "o", "--blend", "nope"],
    ["data", "check"],
    ["models", "--size", "-3"],
])
def test_a_wrong_command_line_stays_a_usage_error(argv, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and ("Usage:" in err or "Error:" in err), err


def test_a_usage_error_answers_before_tensorflow_is_imported():
    code = ("import sys\nfrom kd_edge.cli import main\ntry:\n    main(['convert', '-t', 'nosuch', '--out', 'x'])\n"
            "except SystemExit as e:\n    print('EXIT', e.code, 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "EXIT 2 False" in proc.stdout, proc.stdout + proc.stderr
    assert "unknown target 'nosuch'" in proc.stderr


# ------------------------------------------------------------------------------------------ item 7: data synth/check
def test_synth_skips_a_truncated_jpeg_like_a_corrupt_png_with_one_line_each(tmp_path, kd_edge_exe):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("good.jpg", "cut.jpg"):
        Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(src / name, quality=90)
    data = (src / "cut.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(data[: len(data) * 6 // 10])  # header intact, image data cut
    Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(src / "bad.png")
    (src / "bad.png").write_bytes((src / "bad.png").read_bytes()[:40])
    proc = subprocess.run([kd_edge_exe, "data", "synth", str(src), str(tmp_path / "out"), "--count", "4",
                           "--size", "32", "--max-side", "64"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2, proc.stderr
    assert all(line.startswith("kd-edge: warning: ") and "skipped" in line for line in warnings), proc.stderr
    assert any("cut.jpg" in line and "truncated" in line for line in warnings)
    assert any("bad.png" in line for line in warnings)
    assert "UserWarning" not in proc.stderr and "warnings.warn" not in proc.stderr
    meta = json.loads((tmp_path / "out" / "synth.json").read_text())
    assert {s["file"] for s in meta["source"]["skipped"]} == {"cut.jpg", "bad.png"}
    assert meta["camera"]["max_side"] == 64 and meta["source"]["shrunk"] == 1  # good.jpg, 96 -> 64 px
    assert meta["source"]["tiles"] == 4  # 2 x 2 tiles of 32 in the shrunk photo, not 3 x 3


def test_data_check_without_pairs_says_so(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    write_image(tmp_path / "photos" / "a.png", np.zeros((8, 8, 3), np.float32))
    code, out, _ = _run(["data", "check", str(tmp_path / "photos")], capsys)
    assert code == 1
    assert out.splitlines()[-1].startswith("FAILED: no blur/sharp pairs here")
    assert "kd-edge data synth" in out and "0 usable pairs of 0" not in out
    (tmp_path / "empty" / "blur").mkdir(parents=True)
    (tmp_path / "empty" / "sharp").mkdir()
    code, out, _ = _run(["data", "check", str(tmp_path / "empty")], capsys)
    assert code == 1 and "FAILED: no blur/sharp pairs here (blur/ and sharp/ hold no images" in out


# ------------------------------------------------------------------------------------------ item 10: quiet converters
NOISE = {
    "coremltools progress bar": "passes/s",
    "coremltools op bar": "ops/s",
    "LiteRT XNNPACK INFO": "XNNPACK delegate",
    "TFLite quantizer": "fully_quantize",
    "onnxconverter-common float16 warning": "will be truncated",
    "Python warning": "Warning:",
}


@pytest.fixture(scope="module")
def noisy_tiny(tmp_path_factory):
    """edge-tiny with one weight below float16's smallest normal, so onnxconverter-common has a reason to warn."""
    import tf_keras as keras

    from kd_edge.models import build, save_model

    root = tmp_path_factory.mktemp("noisy")
    keras.utils.set_random_seed(1)
    model = build("edge-tiny")
    weights = model.get_weights()
    biggest = max(range(len(weights)), key=lambda i: weights[i].size)
    weights[biggest].flat[0] = 1e-9
    model.set_weights(weights)
    save_model(model, root / "tiny.keras")
    return root / "tiny.keras"


@pytest.mark.slow
def test_convert_all_is_quiet_and_prints_its_table_once(noisy_tiny, tmp_path, kd_edge_exe):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}  # the CLI itself must silence them, not the environment
    proc = subprocess.run([kd_edge_exe, "convert", str(noisy_tiny), "-t", "all", "--input-size", "32",
                           "--out", str(tmp_path / "exp")], capture_output=True, text=True, timeout=600, env=env)
    both = proc.stdout + proc.stderr
    found = {what: needle for what, needle in NOISE.items() if needle in both}
    assert not found, f"noise in quiet output: {found}\n{proc.stderr}"
    from kd_edge.converters.registry import targets

    for target in targets():
        rows = [line for line in proc.stdout.splitlines() if line.startswith(target + " ")]
        assert len(rows) == 1, (target, proc.stdout)
        assert not any(line.strip().startswith(target + " ") for line in proc.stderr.splitlines()), proc.stderr
    assert proc.stderr.count("converting tiny.keras -> ") == len(targets())


@pytest.mark.slow
def test_the_silenced_noise_is_real_and_shown_with_verbose(noisy_tiny, tmp_path, kd_edge_exe):
    """The same sources do print with --verbose: the quiet test above checks something that exists."""
    proc = subprocess.run([kd_edge_exe, "--verbose", "convert", str(noisy_tiny), "-t", "tflite-int8", "-t",
                           "onnx-fp16", "-t", "coreml-fp32", "--input-size", "32", "--out", str(tmp_path / "exp")],
                          capture_output=True, text=True, timeout=600)
    both = proc.stdout + proc.stderr
    for what in ("coremltools progress bar", "LiteRT XNNPACK INFO", "TFLite quantizer",
                 "onnxconverter-common float16 warning"):
        assert NOISE[what] in both, (what, proc.stderr[-3000:])
