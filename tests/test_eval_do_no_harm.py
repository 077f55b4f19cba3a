"""kd-edge eval's do-no-harm line: each model also runs on the sharp images, and PSNR(model(sharp), sharp) is its own
table in report.md / report.html, its own key in summary.json and its own column in per_image.csv.

Real tf_keras models, real PNG files; nothing mocked."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge import metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_eval import _load_png, make_dataset, make_keras_model  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("harm")
    data = make_dataset(root / "data" / "test", count=3, kernels=False)
    conv = make_keras_model(root / "conv.keras", kind="conv", seed=4)
    make_keras_model(root / "identity.keras", kind="identity")
    return {"root": root, "data": data, "conv": conv, "paths": [root / "conv.keras", root / "identity.keras"]}


@pytest.fixture(scope="module")
def result(setup):
    from kd_edge.report.evaluate import evaluate

    return evaluate(setup["root"] / "data", setup["paths"], names=["conv", "identity"], progress=False, samples=0)


def test_do_no_harm_is_psnr_of_the_model_on_the_sharp_image(setup, result):
    assert set(result.do_no_harm) == {"conv", "identity"}
    assert np.all(result.do_no_harm["identity"] == metrics.MAX_PSNR_DB)  # the identity returns the sharp image
    for i, name in enumerate(result.images):
        sharp = _load_png(setup["data"] / "sharp" / name)
        expected = metrics.psnr(np.clip(setup["conv"].predict(sharp[None], verbose=0)[0], 0, 1), sharp)
        assert result.do_no_harm["conv"][i] == pytest.approx(expected, abs=1e-4)
    assert np.all(result.do_no_harm["conv"] < metrics.MAX_PSNR_DB)


def test_report_files_carry_the_do_no_harm_line(result, tmp_path):
    from kd_edge.report.build import write_report

    write_report(result, tmp_path, reference=False)
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]["do_no_harm"]
    assert summary["identity"]["mean"] == metrics.MAX_PSNR_DB and summary["identity"]["n"] == 3
    assert summary["conv"]["mean"] == pytest.approx(float(np.mean(result.do_no_harm["conv"])))
    md = (tmp_path / "report.md").read_text()
    assert "**Do no harm**" in md and "do no harm mean (dB)" in md
    assert f"| conv | {summary['conv']['mean']:.2f} |" in md
    assert "Do no harm" in (tmp_path / "report.html").read_text()
    with open(tmp_path / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["conv_do_no_harm_psnr"]) for r in rows] == pytest.approx(list(result.do_no_harm["conv"]))


def test_do_no_harm_can_be_left_out(setup, tmp_path):
    from kd_edge.report.build import write_report
    from kd_edge.report.evaluate import evaluate

    res = evaluate(setup["data"], setup["paths"][1:], progress=False, samples=0, do_no_harm=False)
    assert res.do_no_harm == {}
    write_report(res, tmp_path, reference=False)
    assert "Do no harm" not in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "summary.json").read_text())["summary"]["do_no_harm"] == {}
