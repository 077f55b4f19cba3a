"""A model worse than the blurred input gets no retention figure and is flagged (issue 15, item 8).

Real files and real tf_keras models through `kd-edge eval`: the "blur" is a known intensity change
(blur = 0.8 * sharp + 0.1), so a 1x1 convolution that undoes most of it is a teacher that beats the input, one that
undoes less is a student between the two, and a halving of the intensities is a model below the input."""
import json

import numpy as np
import pytest

from kd_edge.cli import main
from kd_edge.images import write_image
from kd_edge.report import stats


def _affine_model(path, scale, bias):
    import tf_keras as keras

    inp = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(3, 1)
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3) * scale, np.full(3, bias, np.float32)])
    model.save(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("below")
    rng = np.random.default_rng(0)
    for sub in ("blur", "sharp"):
        (root / "data" / sub).mkdir(parents=True)
    for i in range(3):
        sharp = rng.random((24, 24, 3)).astype(np.float32)
        write_image(root / "data" / "sharp" / f"{i}.png", sharp)
        write_image(root / "data" / "blur" / f"{i}.png", 0.8 * sharp + 0.1)
    _affine_model(root / "teacher.keras", 1.2, -0.1)    # close to the inverse 1.25 x - 0.125
    _affine_model(root / "student.keras", 1.1, -0.05)   # half way
    _affine_model(root / "worse.keras", 0.5, 0.0)       # darker than the input: below it
    return root


def _eval(setup, tmp_path, capsys, names):
    argv = ["eval", "--data", str(setup / "data"), *(str(setup / f"{n}.keras") for n in names),
            "--names", ",".join(names), "--no-baselines", "--samples", "0", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())["summary"]
    return out, (tmp_path / "r" / "report.md").read_text(), summary


def test_a_model_below_the_blurred_input_has_no_gain_share_and_is_flagged(setup, tmp_path, capsys):
    out, md, summary = _eval(setup, tmp_path, capsys, ["teacher", "student", "worse"])
    cols = summary["columns"]
    b, t, s, w = (cols[n]["psnr"]["mean"] for n in ("blurred", "teacher", "student", "worse"))
    assert w < b < s < t  # the set-up holds
    ret = summary["retention"]
    assert ret["student"]["psnr_gain_share_pct"] == pytest.approx(100 * (s - b) / (t - b))
    assert ret["worse"]["psnr_gain_share_pct"] is None
    assert ret["worse"]["psnr_gain_share_note"] == stats.BELOW_INPUT
    assert set(summary["below_blurred_input"]) == {"worse"}
    assert summary["below_blurred_input"]["worse"]["psnr_db"] == pytest.approx(w - b)
    retention_table = md.split("1.4 Teacher-to-student retention")[1].split("\n#")[0]
    row = next(line for line in retention_table.splitlines() if line.startswith("| worse |"))
    assert row.count("n/a: below the blurred input") == 2, row  # PSNR and SSIM gain shares
    assert "**Below the blurred input**" in md and "**worse** (PSNR" in md
    flagged = [line for line in out.splitlines() if "BELOW the blurred input" in line]
    assert len(flagged) == 1 and flagged[0].split()[0] == "worse", out


def test_a_teacher_below_the_input_gives_no_shares_at_all(setup, tmp_path, capsys):
    out, md, summary = _eval(setup, tmp_path, capsys, ["worse", "student"])  # the first model is the reference
    ret = summary["retention"]["student"]
    assert ret["psnr_gain_share_pct"] is None and ret["psnr_gain_share_note"] == stats.TEACHER_BELOW_INPUT
    assert "n/a: the teacher is not above the blurred input" in md
    assert "%" not in ret["psnr_gain_share_note"]
