"""benchmarks/realdata.py: per-set and per-image scores, shift-tolerant PSNR, do no harm, raw output range and the
issue-13 targets, on a small real folder of PNG pairs (and on ../shared/data/realblur when it is there).

Real tf_keras models (a freshly built edge-tiny and a deliberately harmful one), a real LiteRT conversion, real
files and the real scripts; nothing mocked."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge import metrics
from kd_edge.benchmarks import realdata
from kd_edge.report import regions

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LEVIN_SHIFT = 3


def _png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path)


def _read(path):
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


def _textured(rng, h, w):
    from scipy import ndimage

    return np.clip(ndimage.zoom(rng.random((h // 4 + 2, w // 4 + 2, 3)), (4, 4, 1), order=3)[:h, :w], 0, 1)


def _box_blur(img, size=5):
    from scipy import ndimage

    return ndimage.uniform_filter(img, size=(size, size, 1), mode="reflect")


def make_realblur(root):
    """faces/ (3 pairs, 50x70: not a multiple of any stride), levin09_gray/ (2 pairs sharing one sharp image, the
    blur shifted by 3 px like an off-centre kernel), general_noGT/ (1 photo) and a MANIFEST.tsv."""
    rng = np.random.default_rng(0)
    rows = ["set\tfile\tsource_repo\tsource_path\twidth\theight\tpsnr_blur_vs_sharp_dB\tlicense_if_known"]
    for i in range(3):
        sharp = _textured(rng, 50, 70)
        _png(root / "faces" / "sharp" / f"f{i}.png", sharp)
        _png(root / "faces" / "blur" / f"f{i}.png", _box_blur(sharp))
        rows.append(f"faces\tf{i}.png\tr\tp\t70\t50\t20.0\ttest licence")
    sharp = _textured(rng, 48, 48)
    for k in (1, 2):
        _png(root / "levin09_gray" / "sharp" / f"im1_ker{k}.png", sharp)
        _png(root / "levin09_gray" / "blur" / f"im1_ker{k}.png",
             np.roll(_box_blur(sharp, 1 + 2 * k), LEVIN_SHIFT, axis=(0, 1)))
    _png(root / "general_noGT" / "photo.png", _textured(rng, 40, 40))
    (root / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return root


def make_harmful_model(path):
    """y = 3x - 1: damages every image and leaves [0, 1] (raw range -1..2)."""
    import tf_keras as keras

    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Rescaling(3.0, offset=-1.0)(inp))
    model.save(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import tf_keras as keras

    from kd_edge.models import build, save_model

    root = tmp_path_factory.mktemp("realdata")
    keras.utils.set_random_seed(0)
    near_identity = build("edge-tiny", residual_init_scale=1e-3)  # every residual branch starts near zero
    save_model(near_identity, root / "tiny.keras")
    make_harmful_model(root / "harmful.keras")
    return {"root": root, "data": make_realblur(root / "realblur"), "tiny": root / "tiny.keras",
            "harmful": root / "harmful.keras"}


@pytest.fixture(scope="module")
def doc(setup):
    out = setup["root"] / "results" / "realdata_test.json"
    rc = realdata.main([str(setup["tiny"]), str(setup["harmful"]), "--names", "tiny,harmful",
                        "--realblur", str(setup["data"]), "--json", str(out), "--stress-size", "32"])
    assert rc == 0
    return json.loads(out.read_text())


def test_json_schema_and_host_facts(doc):
    assert doc["format"] == "kd-edge-realdata/1"
    assert doc["realblur"]["sets"] == ["faces", "levin09_gray"] and doc["realblur"]["unpaired_photos"] == 1
    assert "isa_flags" in doc["host"] and doc["host"]["cores_logical"] >= 1
    assert set(doc["target_definitions"]) == {"gain_ge_1db_every_set", "worse_le_10pct_of_images",
                                              "do_no_harm_ge_35db", "raw_output_within_range"}
    for model in doc["models"]:
        for key in ("name", "path", "kind", "sha256", "verified", "stride", "sets", "do_no_harm", "raw_output",
                    "grid_artifacts", "targets", "timing", "run_mode"):
            assert key in model, key
        for s in model["sets"].values():
            for key in ("images", "blurred_psnr_mean", "output_psnr_mean", "blurred_ssim_mean", "output_ssim_mean",
                        "gain_db_mean", "worse_fraction", "raw_min", "raw_max", "per_image"):
                assert key in s, key
        assert model["timing"]["inference_s"] > 0 and model["timing"]["megapixels"] > 0
    assert doc["models"][0]["sets"]["faces"]["images"] == 3 and doc["models"][0]["sets"]["levin09_gray"]["images"] == 2


def test_per_image_scores_equal_direct_computations(setup, doc):
    harmful = doc["models"][1]
    for record in harmful["sets"]["faces"]["per_image"]:
        blur = _read(setup["data"] / "faces" / "blur" / record["file"])
        sharp = _read(setup["data"] / "faces" / "sharp" / record["file"])
        assert record["blurred"]["psnr"] == pytest.approx(metrics.psnr(blur, sharp), abs=1e-6)
        expected = metrics.psnr(np.clip(3.0 * blur - 1.0, 0, 1), sharp)
        assert record["output"]["psnr"] == pytest.approx(expected, abs=1e-4)
        assert record["gain_db"] == pytest.approx(record["output"]["psnr"] - record["blurred"]["psnr"])
        assert record["worse"] is True and record["manifest_psnr_blur_vs_sharp_db"] == 20.0
    assert harmful["sets"]["faces"]["manifest_rows"] == 3 and harmful["sets"]["levin09_gray"]["manifest_rows"] == 0
    assert harmful["sets"]["faces"]["worse_fraction"] == 1.0


def test_region_split_finds_where_the_blur_changed_the_photo():
    rng = np.random.default_rng(3)
    sharp = _textured(rng, 64, 96).astype(np.float32)
    blurred = sharp.copy()
    blurred[:, :48] = _box_blur(sharp, 9)[:, :48]  # a moving subject on the left, a static background on the right
    mask = regions.blurred_region(blurred, sharp)
    assert mask[:, :40].mean() > 0.95 and mask[:, 56:].mean() < 0.05
    # restores the left half exactly, adds noise of sigma 0.02 to the untouched right half
    output = sharp.copy()
    output[:, 48:] = np.clip(sharp[:, 48:] + rng.normal(0, 0.02, sharp[:, 48:].shape), 0, 1)
    split = regions.region_gains(blurred, output, sharp)
    assert 0.45 < split["blurred"]["share"] < 0.6
    assert split["blurred"]["gain_db"] > 20.0
    unblurred = ~mask
    expected = metrics.psnr(output[unblurred][None, None], sharp[unblurred][None, None])
    assert split["unblurred"]["output_psnr"] == pytest.approx(expected, abs=1e-3)
    assert split["unblurred"]["blurred_psnr"] == metrics.MAX_PSNR_DB and split["unblurred"]["gain_db"] < -50
    # a uniformly blurred photo has (almost) no unblurred region: no PSNR for it rather than a figure from a few pixels
    whole = regions.region_gains(_box_blur(sharp, 9), sharp, sharp)
    assert whole["unblurred"]["gain_db"] is None and whole["unblurred"]["share"] < regions.MIN_SHARE


def test_region_gains_in_the_json_equal_direct_computations(setup, doc):
    harmful = doc["models"][1]["sets"]["faces"]
    for record in harmful["per_image"]:
        blur = _read(setup["data"] / "faces" / "blur" / record["file"])
        sharp = _read(setup["data"] / "faces" / "sharp" / record["file"])
        direct = regions.region_gains(blur, np.clip(3.0 * blur - 1.0, 0, 1), sharp)
        for name in ("blurred", "unblurred"):
            assert record["regions"][name]["share"] == direct[name]["share"]
            if direct[name]["gain_db"] is not None:
                assert record["regions"][name]["gain_db"] == pytest.approx(direct[name]["gain_db"], abs=1e-3)
    assert harmful["regions"]["blurred"]["gain_db_mean"] < 0 and harmful["regions"]["blurred"]["images"] >= 1


def test_levin_is_scored_shift_tolerantly_for_input_and_output_alike(doc):
    levin = doc["models"][0]["sets"]["levin09_gray"]
    assert levin["shift_search_px"] == 7 and "15x15" in levin["shift_search"]
    assert doc["models"][0]["sets"]["faces"]["shift_search_px"] == 0
    # the blur is shifted by 3 px: the shift search finds it, for the input and for the near-identity output
    assert levin["blurred_psnr_mean"] > levin["unshifted_blurred_psnr_mean"] + 3.0
    assert levin["output_psnr_mean"] > levin["unshifted_output_psnr_mean"] + 3.0


def test_shift_tolerant_psnr_of_an_image_against_itself_shifted_by_3px():
    sharp = _textured(np.random.default_rng(5), 64, 64).astype(np.float32)
    shifted = np.roll(sharp, (LEVIN_SHIFT, -LEVIN_SHIFT), axis=(0, 1))
    plain = metrics.psnr(shifted, sharp)
    tolerant = realdata.shift_tolerant_psnr(shifted, sharp, 7)
    assert plain < 25.0 and tolerant >= 99.0
    assert realdata.shift_tolerant_psnr(shifted, sharp, 2) < tolerant - 20.0  # a 2-px window cannot reach 3 px


def test_near_identity_edge_tiny_does_no_harm_and_stays_in_range(setup, doc):
    tiny = doc["models"][0]
    from kd_edge.models import read_manifest

    assert tiny["verified"] is True and tiny["sha256"] == read_manifest(setup["tiny"])["sha256"]
    harm = tiny["do_no_harm"]
    assert harm["images"] == 4  # 3 face sharps + the one Levin sharp shared by both pairs
    assert harm["min_db"] > 35.0 and harm["mean_db"] >= harm["min_db"]
    raw = tiny["raw_output"]
    assert set(raw["synthetic"]) >= {"black", "white", "checkerboard_1px", "near_black_noise"}
    assert raw["within_allowed"] is True and raw["real_photos"]["count"] == 5 + 4 + 1
    assert tiny["targets"]["do_no_harm_ge_35db"] is True and tiny["targets"]["raw_output_within_range"] is True
    assert tiny["targets"]["all"] is False  # a near-identity gains nothing, so it cannot gain +1 dB
    # an untrained U-Net's pixel shuffles turn its biases into a 4-px lattice of a few levels: measured, not judged
    grid = tiny["grid_artifacts"]
    assert grid["period"] == 4 and grid["real_photos"]["images"] == 5 + 4
    assert grid["saturated_fields"]["images"] == 10 and grid["synthetic_scenes"]["images"] == 16
    assert all("added_grid_levels" in r for s in tiny["sets"].values() for r in s["per_image"])


def test_a_harmful_model_fails_every_target(doc):
    harmful = doc["models"][1]
    assert harmful["verified"] is False
    assert harmful["do_no_harm"]["mean_db"] < 15.0
    assert harmful["raw_output"]["synthetic"]["black"]["min"] == pytest.approx(-1.0)
    assert harmful["raw_output"]["synthetic"]["white"]["max"] == pytest.approx(2.0)
    assert harmful["raw_output"]["within_allowed"] is False
    assert not any(harmful["targets"].values())


def test_missing_data_is_a_skip_with_a_reason_and_no_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert realdata.main(["--realblur", str(tmp_path / "absent"), "--json", str(out)]) == 0
    assert "skipped:" in capsys.readouterr().out and not out.exists()
    for cmd in ([sys.executable, "benchmarks/realdata.py"], [sys.executable, "-m", "kd_edge.benchmarks.realdata"]):
        proc = subprocess.run(cmd + ["--realblur", str(tmp_path / "absent")], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("skipped:"), proc.stderr


def test_a_modified_artifact_is_refused_naming_the_file(setup, tmp_path, capsys):
    bad = tmp_path / "tiny.keras"
    shutil.copy(setup["tiny"], bad)
    shutil.copy(str(setup["tiny"]) + ".json", str(bad) + ".json")
    with open(bad, "ab") as fh:
        fh.write(b"tampered")
    out = tmp_path / "r.json"
    assert realdata.main([str(bad), "--realblur", str(setup["data"]), "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and str(bad) in err and not out.exists()


def test_fixed_size_tflite_artifact_runs_by_tiles_like_its_keras_model(setup, tmp_path):
    from kd_edge.converters.pipeline import convert

    [result] = convert(setup["tiny"], ["tflite-fp32"], tmp_path / "art", input_size=64)
    art = realdata.benchmark_model(result.artifact, "tiny-fp32", setup["data"], align={"levin09_gray": 7},
                                   stress_size=32, log=lambda msg: None)
    keras = realdata.benchmark_model(setup["tiny"], "tiny", setup["data"], align={"levin09_gray": 7},
                                     stress_size=32, log=lambda msg: None)
    assert art["kind"] == "tflite" and art["verified"] is True and art["input_size"] == [64, 64]
    assert art["run_mode"] == ["tiles 64x64, overlap 16"] and art["raw_output"]["stress_size"] == 64
    assert art["do_no_harm"]["min_db"] > 35.0
    assert art["do_no_harm"]["mean_db"] == pytest.approx(keras["do_no_harm"]["mean_db"], abs=1.0)
    for name, s in keras["sets"].items():
        assert art["sets"][name]["output_psnr_mean"] == pytest.approx(s["output_psnr_mean"], abs=0.5), name


def test_real_pairs_of_the_shared_folder(shared_dir, setup, tmp_path):
    """One pair per set of ../shared/data/realblur through the near-identity edge-tiny; big images tiled."""
    out = tmp_path / "real.json"
    assert realdata.main([str(setup["tiny"]), "--realblur", str(shared_dir / "data" / "realblur"), "--limit", "1",
                          "--whole-max-pixels", "100000", "--json", str(out)]) == 0
    model = json.loads(out.read_text())["models"][0]
    assert {"gopro_deepdeblur", "levin09_gray", "face_300vw_cfmdgan"} <= set(model["sets"])
    assert model["sets"]["levin09_gray"]["shift_search_px"] == 7
    assert any(m.startswith("tiles 256x256") for m in model["run_mode"]) and any("whole" in m for m in model["run_mode"])
    for name, s in model["sets"].items():
        assert s["images"] == 1
        record = s["per_image"][0]
        unshifted = record["unshifted"]["blurred_psnr"] if "unshifted" in record else record["blurred"]["psnr"]
        # we read the pairs as MANIFEST.tsv's author did: same blurred-vs-sharp PSNR
        assert unshifted == pytest.approx(record["manifest_psnr_blur_vs_sharp_db"], abs=0.05), name
    assert model["do_no_harm"]["min_db"] > 35.0 and model["raw_output"]["within_allowed"] is True
