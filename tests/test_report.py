"""The report folder: every referenced figure exists, report.html is self-contained, same seed -> same bytes,
statistics and the cost table are right."""
import csv
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import kd_edge  # noqa: F401
from kd_edge.errors import InputFileError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_eval import make_dataset, make_keras_model  # noqa: E402


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two reports from the same seed and one from another seed, on one teacher and two students."""
    from kd_edge.report.build import write_report
    from kd_edge.report.evaluate import evaluate

    root = tmp_path_factory.mktemp("report")
    data = make_dataset(root / "data", count=5)
    paths = [root / "teacher.keras", root / "student.keras", root / "identity.keras"]
    make_keras_model(paths[0], kind="conv", seed=1)
    make_keras_model(paths[1], kind="conv", seed=2)
    make_keras_model(paths[2], kind="identity")
    out = {}
    for key, seed in (("a", 7), ("b", 7), ("c", 8)):
        result = evaluate(data, paths, names=["teacher", "student", "identity"], seed=seed, progress=False)
        write_report(result, root / key)
        out[key] = (root / key, result)
    return out


def test_every_figure_the_report_references_exists(reports):
    folder, result = reports["a"]
    md = (folder / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"psnr_density.png", "ssim_density.png", "psnr_vs_ssim.png", "sample_1.png", "sample_2.png"} <= set(images)
    for name in images:
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
    links = re.findall(r"\]\(([^)]+\.csv)\)", md)
    assert links == ["per_image.csv"] and (folder / "per_image.csv").is_file()
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["files"]) >= set(images) | {"report.md", "report.html", "per_image.csv"}


def test_html_is_self_contained(reports):
    folder, _ = reports["a"]
    page = (folder / "report.html").read_text()
    srcs = re.findall(r"""\bsrc\s*=\s*["']([^"']*)["']""", page)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<link\b|<script\b|@import|url\(", page)
    assert "Tesla P100 / Helen reference" in page and "not comparable" in page
    assert "<table>" in page and "teacher" in page


def test_same_seed_same_bytes(reports):
    a, _ = reports["a"]
    b, _ = reports["b"]
    c, result_c = reports["c"]
    for name in sorted(p.name for p in a.iterdir()):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # Another seed scores the same images identically; only the samples may change.
    assert (a / "per_image.csv").read_bytes() == (c / "per_image.csv").read_bytes()
    assert json.loads((c / "summary.json").read_text())["seed"] == 8 and result_c.seed == 8


def test_report_numbers_match_the_csv(reports):
    from kd_edge.report import stats

    folder, result = reports["a"]
    with open(folder / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((folder / "summary.json").read_text())["summary"]
    for column in ("blurred", "wiener", "richardson-lucy", "teacher", "student", "identity"):
        psnr = np.array([float(r[f"{column}_psnr"]) for r in rows])
        ssim = np.array([float(r[f"{column}_ssim"]) for r in rows])
        got = summary["columns"][column]
        assert got["psnr"]["mean"] == pytest.approx(psnr.mean())
        assert got["psnr"]["std"] == pytest.approx(psnr.std())
        assert got["ssim"]["median"] == pytest.approx(np.median(ssim))
        assert got["psnr_ssim_r"] == pytest.approx(np.corrcoef(psnr, ssim)[0, 1])
        assert got["share_ssim_above_0_9"] == pytest.approx(np.mean(ssim > 0.9))
    md = (folder / "report.md").read_text()
    t = summary["columns"]["teacher"]["psnr"]["mean"]
    s = summary["columns"]["student"]["psnr"]["mean"]
    b = summary["columns"]["blurred"]["psnr"]["mean"]
    ret = summary["retention"]["student"]
    assert ret["psnr_pct"] == pytest.approx(100 * s / t)
    if s < b:  # a share of the teacher's gain means nothing for a model below the blurred input
        assert ret["psnr_gain_share_pct"] is None and ret["psnr_gain_share_note"] == stats.BELOW_INPUT
        assert "student" in summary["below_blurred_input"]
    elif t <= b:
        assert ret["psnr_gain_share_pct"] is None and ret["psnr_gain_share_note"] == stats.TEACHER_BELOW_INPUT
    else:
        assert ret["psnr_gain_share_pct"] == pytest.approx(100 * (s - b) / (t - b))
    assert f"| student | {100 * s / t:.1f}% |" in md
    assert f"| teacher | {t:.2f} |" in md
    assert summary["teacher"] == "teacher" and set(summary["retention"]) == {"student", "identity"}
    assert stats.teacher_name(result) == "teacher"


def test_region_gains_match_the_csv_and_an_identity_gains_nothing_in_either_region(reports):
    from kd_edge.report import regions
    from kd_edge.report.evaluate import _read_pair, list_pairs

    folder, result = reports["a"]
    with open(folder / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((folder / "summary.json").read_text())["summary"]
    assert set(summary["regions"]) == {"wiener", "richardson-lucy", "teacher", "student", "identity"}
    for column in summary["regions"]:
        for region in regions.NAMES:
            values = [float(r[f"{column}_{region}_region_gain_db"]) for r in rows
                      if r[f"{column}_{region}_region_gain_db"]]
            got = summary["regions"][column][region]
            assert got["n"] == len(values)
            if values:
                assert got["mean"] == pytest.approx(np.mean(values))
    # the blurred region exists on every synthetic pair; an identity returns its input, so both gains are 0
    assert summary["regions"]["identity"]["blurred"]["n"] == len(rows)
    for region in regions.NAMES:
        if summary["regions"]["identity"][region]["n"]:
            assert summary["regions"]["identity"][region]["max"] == pytest.approx(0.0, abs=1e-9)
            assert summary["regions"]["identity"][region]["min"] == pytest.approx(0.0, abs=1e-9)
    # the synthetic pairs are blurred: the first one has a blurred region of its own
    name, blur_path, sharp_path = list_pairs(Path(result.split_dir))[0]
    blur, sharp = _read_pair(blur_path, sharp_path)
    mask = regions.blurred_region(blur, sharp)
    assert rows[0]["file"] == name and 0 < mask.mean() <= 1
    md = (folder / "report.md").read_text()
    assert "**Where the gain is**" in md and "| identity | +0.00 |" in md


def test_statistics_edge_cases():
    from kd_edge.report import stats

    assert np.isnan(stats.pearson([1, 2], [3, 4]))            # too few images
    assert np.isnan(stats.pearson([1, 1, 1], [1, 2, 3]))      # constant series
    assert stats.pearson([1, 2, 3, 5], [2, 4, 6, 10]) == pytest.approx(1.0)
    assert stats.share_above([0.95, 0.5, np.nan, 0.91]) == pytest.approx(2 / 3)
    agg = stats.aggregate([np.nan, np.nan])
    assert agg["n"] == 0 and np.isnan(agg["mean"])
    grid = np.linspace(20, 40, 2001)
    density = stats.gaussian_kde([25, 30, 31, 35], grid)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.isfinite(stats.gaussian_kde([30, 30, 30], grid)))


def _model(name, path, kind="tflite", params=None):
    return SimpleNamespace(name=name, path=str(path), kind=kind, params=params, file_bytes=100)


def test_cost_rows_match_bench_json_by_path_then_name(tmp_path):
    from kd_edge.report import cost

    (tmp_path / "a.int8.tflite").write_bytes(b"x")
    bench = {"device": {"kind": "local", "target": "local"}, "host": {"cpu_model": "Test CPU"}, "results": [
        {"artifact": "a.int8.tflite", "name": "a.int8.tflite", "status": "ok", "threads": 1, "size": 256,
         "latency_ms": {"p50": 9.0}, "peak_rss_mb": 100.0, "params": 1234},
        {"artifact": "a.int8.tflite", "name": "a.int8.tflite", "status": "ok", "threads": 4, "size": 256,
         "latency_ms": {"p50": 4.0}, "peak_rss_mb": 110.0},
        {"artifact": "a.int8.tflite", "name": "a.int8.tflite", "status": "ok", "threads": 4, "size": 512,
         "latency_ms": {"p50": 15.0}},
        {"artifact": "/other/b.onnx", "name": "b.onnx", "status": "failed", "reason": "boom", "threads": 1, "size": 256},
        {"artifact": "/gone/c.onnx", "name": "c.onnx", "status": "ok", "threads": 1, "size": 256}]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    doc = cost.read_bench(path)
    rows, unmatched, device = cost.cost_rows(
        [_model("int8", tmp_path / "a.int8.tflite"), _model("b", "/somewhere/else/b.onnx", "onnx"),
         _model("k", tmp_path / "k.keras", "keras")], doc, path)
    assert rows[0]["latency_ms"] == 4.0 and rows[0]["threads"] == 4 and rows[0]["size"] == 256
    assert rows[0]["memory_mb"] == 110.0
    assert rows[1]["status"] == "failed" and rows[1]["reason"] == "boom" and rows[1]["latency_ms"] is None
    assert rows[2]["status"] == "not in bench JSON"
    assert unmatched == ["/gone/c.onnx"] and "Test CPU" in device
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputFileError, match="bad.json.*not JSON"):
        cost.read_bench(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(InputFileError, match="no 'results' list"):
        cost.read_bench(tmp_path / "other.json")


def test_single_model_report_has_no_retention_and_no_reference(tmp_path):
    from kd_edge.report.build import write_report
    from kd_edge.report.evaluate import evaluate

    data = make_dataset(tmp_path / "d", count=3, size=32, kernels=False)
    make_keras_model(tmp_path / "only.keras", kind="identity")
    result = evaluate(data, [tmp_path / "only.keras"], samples=1, progress=False)
    write_report(result, tmp_path / "r", reference=False)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "One model only" in md and "P100" not in md and "sample_1.png" in md and "sample_2.png" not in md


def test_conversion_cost_pairs_artifacts_with_their_source_by_sha256():
    from kd_edge.report import stats
    from kd_edge.report.evaluate import EvalResult, ModelEntry

    def entry(name, path, manifest):
        return ModelEntry(name=name, path=path, runtime=None, kind="x", manifest=manifest)

    models = [entry("student", "s.keras", {"sha256": "abc"}),
              entry("int8", "s.tflite-int8.tflite", {"source_model": {"sha256": "abc", "file": "s.keras"},
                                                     "parity": {"psnr_db": 41.5}}),
              entry("other", "o.tflite", {"source_model": {"sha256": "zzz", "file": "s.keras"}})]
    psnr = {"blurred": np.array([20.0, 21.0]), "student": np.array([25.0, 26.0]), "int8": np.array([24.9, 25.5]),
            "other": np.array([1.0, 2.0])}
    ssim = {k: v / 100 for k, v in psnr.items()}
    result = EvalResult(data_dir=".", split_dir=".", seed=0, tile=None, images=["a", "b"], sizes=[(8, 8)] * 2,
                        models=models, baselines=[], psnr=psnr, ssim=ssim)
    cost = stats.conversion_cost(result)
    assert set(cost) == {"int8"} and cost["int8"]["source"] == "student"
    assert cost["int8"]["delta_psnr_db_mean"] == pytest.approx(-0.3)
    assert cost["int8"]["delta_psnr_db_worst"] == pytest.approx(-0.5)
    assert cost["int8"]["parity_psnr_db"] == 41.5
