"""DBlur layout checks: every kind of problem reported by file, exit codes, real console script round trip."""
import json
import subprocess

import numpy as np
import pytest

from kd_edge.cli import main
from kd_edge.data.dblur import check, find_pairs, split_dirs
from kd_edge.images import write_image


def _img(seed, h=32, w=40):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


@pytest.fixture
def messy(tmp_path):
    """A split with one good pair and one pair for each documented problem."""
    split = tmp_path / "train"
    for sub in ("blur", "sharp"):
        (split / sub).mkdir(parents=True)

    def pair(name, blur_kw=None, sharp_kw=None, bshape=(32, 40), sshape=(32, 40)):
        write_image(split / "blur" / name, _img(1, *bshape), **(blur_kw or {}))
        write_image(split / "sharp" / name, _img(2, *sshape), **(sharp_kw or {}))

    pair("good.png")
    pair("grey.png", blur_kw={"grayscale": True})
    pair("rgba.png", sharp_kw={"alpha": np.full((32, 40), 200, np.uint8)})
    pair("deep.tif", blur_kw={"bit_depth": 16}, sharp_kw={"bit_depth": 16})
    pair("mismatch.png", sshape=(32, 48))
    pair("truncated.jpg")
    data = (split / "blur" / "truncated.jpg").read_bytes()
    (split / "blur" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    pair("corrupt.png")
    (split / "sharp" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    write_image(split / "blur" / "orphan.png", _img(3))
    write_image(split / "sharp" / "lonely.png", _img(4))
    (split / "blur" / "README.txt").write_text("notes")
    return split


def _by_file(report):
    out = {}
    for p in report.problems:
        out.setdefault(p.file, []).append((p.severity, p.message))
    return out


def test_check_reports_every_problem_by_file(messy):
    report = check(messy)
    problems = _by_file(report)
    assert not report.ok
    split = report.splits[0]
    assert split.blur_files == 8 and split.sharp_files == 8 and split.pairs == 9
    assert split.usable == 4  # good, grey, rgba, deep

    def has(file, severity, text):
        return any(s == severity and text in m for s, m in problems.get(file, []))

    assert has("blur/grey.png", "warning", "grayscale")
    assert has("sharp/rgba.png", "warning", "alpha")
    assert has("blur/deep.tif", "warning", "16-bit") and has("sharp/deep.tif", "warning", "16-bit")
    assert has("blur/mismatch.png", "error", "40x32 differs from sharp/mismatch.png (48x32)")
    assert has("blur/truncated.jpg", "error", "truncated")
    assert has("sharp/corrupt.png", "error", "")
    assert has("blur/orphan.png", "error", "no sharp counterpart")
    assert has("sharp/lonely.png", "error", "no blurred counterpart")
    assert has("blur/README.txt", "warning", "not an image")
    assert "blur/good.png" not in problems and "sharp/good.png" not in problems
    assert split.sizes[(40, 32)] == 4
    d = report.to_dict()
    assert d["errors"] == 5 and d["usable"] == 4 and json.dumps(d)


def test_clean_dataset_is_ok_and_pairs_match_by_name(tmp_path):
    for split in ("train", "test"):
        for i in range(3):
            write_image(tmp_path / split / "blur" / f"{i}.png", _img(i))
            write_image(tmp_path / split / "sharp" / f"{i}.png", _img(i + 10))
    (tmp_path / "samples").mkdir()  # not a split: ignored
    assert [p.name for p in split_dirs(tmp_path)] == ["train", "test"]
    report = check(tmp_path)
    assert report.ok and report.pairs == 6 and report.usable == 6 and not report.problems
    assert [p.name for p in report.ignored] == ["samples"] and "ignored folders" in report.format()
    assert [p.name for p in find_pairs(tmp_path / "train")] == ["0.png", "1.png", "2.png"]


def test_pairs_match_by_stem_across_formats(tmp_path):
    write_image(tmp_path / "blur" / "x.jpg", _img(1))
    write_image(tmp_path / "sharp" / "x.png", _img(2))
    write_image(tmp_path / "blur" / ".hidden.png", _img(3))
    pairs = find_pairs(tmp_path)
    assert [(p.name, p.blur.name, p.sharp.name) for p in pairs] == [("x.jpg", "x.jpg", "x.png")]
    assert check(tmp_path).ok


def test_check_cli_exit_codes_and_output(messy, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", str(messy), "--json", str(tmp_path / "report.json")])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    for line in ("ERROR   blur/mismatch.png", "ERROR   blur/orphan.png", "WARNING blur/grey.png", "FAILED: 4 usable"):
        assert line in out
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ok"] is False and saved["splits"][0]["unusable"] == 5

    with pytest.raises(SystemExit) as exc:
        main(["data", "check", str(tmp_path / "nowhere")])
    assert exc.value.code == 1
    assert "nowhere: no such directory" in capsys.readouterr().err

    (tmp_path / "flat").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", str(tmp_path / "flat")])
    assert exc.value.code == 1
    assert "no blur/ and sharp/ folders" in capsys.readouterr().out


def test_only_warnings_still_pass(tmp_path, capsys):
    write_image(tmp_path / "blur" / "a.png", _img(1), grayscale=True)
    write_image(tmp_path / "sharp" / "a.png", _img(2), bit_depth=16)
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", str(tmp_path)])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "OK: 1 usable pairs of 1, 0 error(s), 2 warning(s)" in out


def test_synth_then_check_through_the_console_script(tmp_path, kd_edge_exe):
    out = tmp_path / "OUT"
    run = subprocess.run([kd_edge_exe, "data", "synth", str(out), "--count", "6", "--size", "64",
                          "--kernel-min", "7", "--kernel-max", "13", "--seed", "3"],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert "6 pairs of 64x64 (4 train, 2 test)" in run.stdout and "PSNR" in run.stdout
    run = subprocess.run([kd_edge_exe, "data", "check", str(out / "train")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 pairs (4 blur, 4 sharp files), 4 usable" in run.stdout and "sizes: 64x64 (4)" in run.stdout
    # again without --force: one line, exit 1, nothing overwritten
    before = (out / "synth.json").read_bytes()
    run = subprocess.run([kd_edge_exe, "data", "synth", str(out), "--count", "2"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1 and "already exists" in run.stderr and "Traceback" not in run.stderr
    assert (out / "synth.json").read_bytes() == before
    # the recorded parameters regenerate the same files
    run = subprocess.run([kd_edge_exe, "data", "synth", "--from-json", str(out / "synth.json"), str(tmp_path / "AGAIN")],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    regenerated = sorted(p for p in out.rglob("*") if p.suffix in (".png", ".npy"))
    assert len(regenerated) == 18
    for f in regenerated:
        assert f.read_bytes() == (tmp_path / "AGAIN" / f.relative_to(out)).read_bytes()
    # usage errors exit 2
    run = subprocess.run([kd_edge_exe, "data", "synth", "a", "b", "c"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2


def test_check_real_shared_data(shared_dir):
    """Real blurred/sharp pairs made by others; levin09_gray is grey content stored as RGB."""
    root = shared_dir / "data" / "realblur"
    report = check(root / "levin09_gray")
    assert report.ok and report.pairs == 32 and report.usable == 32
    split = report.splits[0]
    assert split.sizes[(255, 255)] == 32 and split.grey_as_rgb == 32
    assert 15 < np.mean(split.psnr) < 30
    whole = check(root)
    assert whole.ok and {s.path.name for s in whole.splits} >= {"levin09_gray", "gopro_deepdeblur"}
    assert "general_noGT" in {p.name for p in whole.ignored}  # real blur without ground truth: not a split
