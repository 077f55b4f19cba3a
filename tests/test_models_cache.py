"""``kd-edge models`` answers from the cache in the package: checked here against real builds of the small models."""
import json
import subprocess
import sys

import pytest

from kd_edge.cli import models as zoo

REGENERATE = ("regenerate it: python -c 'from kd_edge.cli.models import write_zoo_cache; write_zoo_cache()' "
              "(builds every architecture once, about a minute)")


def test_the_cache_was_made_from_the_current_architectures():
    cache = json.loads(zoo.ZOO_CACHE.read_text())
    assert cache["key"] == zoo.zoo_key(), f"{zoo.ZOO_CACHE} is stale (the model sources or specs changed): {REGENERATE}"
    assert set(cache["models"]) == set(__import__("kd_edge.models", fromlist=["architectures"]).architectures())


@pytest.mark.parametrize("name", ["edge-tiny", "edge-s"])
def test_cached_figures_equal_a_real_build(name):
    """Params, stride, layers and MACs at a size the cache was not computed at (a*size^2 + b must be exact)."""
    from kd_edge.models import build, count_macs, count_params, model_stride

    facts = zoo.cached_facts()
    assert facts is not None, f"{zoo.ZOO_CACHE} is stale: {REGENERATE}"
    model = build(name)
    f = facts[name]
    assert f["params"] == count_params(model)
    assert f["stride"] == model_stride(model)
    assert f["layers"] == len(model.layers)
    for size in (64, 384):
        assert zoo.macs_at(f, size) == count_macs(model, size, size), (name, size)


def test_a_stale_cache_is_not_used(tmp_path, monkeypatch):
    stale = json.loads(zoo.ZOO_CACHE.read_text())
    stale["key"] = "0" * 64
    stale["models"]["edge-tiny"]["params"] = 1  # a wrong figure that must not be shown
    path = tmp_path / "model_zoo.json"
    path.write_text(json.dumps(stale))
    monkeypatch.setattr(zoo, "ZOO_CACHE", path)
    assert zoo.cached_facts() is None
    row = zoo.describe(["edge-tiny"], size=128)[0]
    from kd_edge.models import build, count_params

    assert row["params"] == count_params(build("edge-tiny")) != 1


def test_models_command_imports_no_tensorflow():
    code = ("import sys\nfrom kd_edge.cli import main\ntry:\n    main(['models', '--size', '512'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('TF_IMPORTED' if 'tensorflow' in sys.modules else 'NO_TF')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "seed-teacher" in proc.stdout and "GMACs@512" in proc.stdout
    assert proc.stdout.strip().endswith("NO_TF"), f"the cache is stale or unused: {REGENERATE}"
