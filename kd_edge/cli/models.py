"""``kd-edge models``: list the model zoo with parameters, GMACs at 256x256, stride and description.

Building the 21M-parameter seed nets to count them takes seconds each, so the figures come from a cache
shipped in the package (``kd_edge/reference/model_zoo.json``): per architecture its params, stride, layer
count, feature layers, and MACs as ``a * size**2 + b`` (exact at any multiple of the stride: every conv
layer's output area scales with ``size**2``; the channel-attention convs after a global pool do not). The
cache is keyed by a hash of the registry's specs and of the model-building sources; when they changed
(an architecture edit not yet re-cached) every model is built and counted instead, which is slow but right.
``tests/test_models_cache.py`` checks the cache against real builds; ``write_zoo_cache()`` regenerates it.
"""
import hashlib
import json
from pathlib import Path

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

ZOO_CACHE = Path(__file__).resolve().parents[1] / "reference" / "model_zoo.json"
# The sources whose change can change a zoo model's params, MACs, stride or layers.
ZOO_SOURCES = ("edge.py", "seed.py", "layers.py", "registry.py", "complexity.py")
CACHE_SIZES = (256, 512)  # two sizes give a and b of a * size**2 + b


def zoo_key() -> str:
    """sha256 of the registry's specs and the model-building sources (what the cache was computed from)."""
    from kd_edge.models import architectures

    models_dir = Path(__file__).resolve().parents[1] / "models"
    digest = hashlib.sha256(json.dumps(architectures(), sort_keys=True, default=str).encode())
    for name in ZOO_SOURCES:
        path = models_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()


def measure(name) -> dict:
    """Build ``name`` and count it: params, stride, layers, feature layers, MACs at CACHE_SIZES (as a and b)."""
    from kd_edge.quiet_import import import_tensorflow_quietly, is_quiet

    if is_quiet():
        import_tensorflow_quietly()
    import tf_keras

    from kd_edge.models import build, count_macs, count_params, model_stride
    from kd_edge.models.complexity import feature_layer_names

    model = build(name)
    (s0, s1), (m0, m1) = CACHE_SIZES, [count_macs(model, s, s) for s in CACHE_SIZES]
    a = (m1 - m0) / (s1 * s1 - s0 * s0)
    facts = {"params": count_params(model), "stride": model_stride(model), "layers": len(model.layers),
             "feature_layers": feature_layer_names(model), "macs_per_px2": a, "macs_const": m0 - a * s0 * s0}
    del model
    tf_keras.backend.clear_session()
    return facts


def macs_at(facts, size) -> int:
    return int(round(facts["macs_per_px2"] * size * size + facts["macs_const"]))


def write_zoo_cache(path=ZOO_CACHE):
    """Build every architecture once and write the cache (run after an architecture change)."""
    from kd_edge.atomic import write_json
    from kd_edge.models import architectures

    write_json(path, {"key": zoo_key(), "sizes": list(CACHE_SIZES),
                      "models": {name: measure(name) for name in architectures()}})
    return path


def cached_facts():
    """{name: facts} from the cache when it matches the current sources, else None."""
    try:
        cache = json.loads(ZOO_CACHE.read_text())
    except (OSError, ValueError):
        return None
    return cache.get("models") if cache.get("key") == zoo_key() else None


def describe(names=None, *, size=256, cache=True):
    """One row (dict) per model: name, family, params, macs, stride... from the cache, else by building it."""
    from kd_edge.errors import KdEdgeError
    from kd_edge.models import architectures

    specs = architectures()
    facts = cached_facts() if cache else None
    rows = []
    for name in names or list(specs):
        if name not in specs:
            raise KdEdgeError(f"unknown architecture {name!r}; choose one of: {', '.join(specs)}")
        spec = specs[name]
        f = facts[name] if facts and name in facts else measure(name)
        macs = macs_at(f, size)
        rows.append({
            "name": name,
            "family": spec["family"],
            "params": f["params"],
            "macs": macs,
            "gmacs": round(macs / 1e9, 3),
            "input_size": [size, size],
            "stride": f["stride"],
            "layers": f["layers"],
            "feature_layers": f["feature_layers"],
            "description": spec["description"],
            "defaults": spec["defaults"],
        })
    return rows


def _params(n):
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1)
@click.option("--json", "json_out", metavar="FILE", help="Also write the table as JSON to FILE ('-' = stdout only).")
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096),
              help="Square input size at which MACs are counted.")
def models(names, json_out, size):
    """List every architecture (or only NAMES) with params, GMACs at SIZExSIZE, stride and description.

    MACs are multiply-accumulates of the convolution/dense layers, counted analytically from shapes
    (cached in the package; rebuilt when the architectures changed). Any input whose height and width
    are multiples of the stride works (fully convolutional).
    """
    from kd_edge.models import architectures
    from kd_edge.models.registry import check_input_size

    for name in names:
        if name not in architectures():
            raise click.BadParameter(f"unknown architecture {name!r}; choose from {', '.join(architectures())}",
                                     param_hint="NAMES")
    for spec in architectures().values():
        if not names or spec["name"] in names:
            check_input_size(size, size, spec["stride"], what=f"--size for {spec['name']}")
    rows = describe(list(names) or None, size=size)
    if json_out == "-":
        click.echo(json.dumps({"input_size": [size, size], "models": rows}, indent=2))
        return
    header = f"{'name':<14}{'params':>9}{'GMACs@' + str(size):>12}{'stride':>8}  description"
    click.echo(header)
    click.echo("-" * len(header))
    for row in rows:
        click.echo(f"{row['name']:<14}{_params(row['params']):>9}{row['gmacs']:>12.3f}{row['stride']:>8}  "
                   f"{row['description']}")
    if json_out:
        from kd_edge.atomic import write_json

        write_json(json_out, {"input_size": [size, size], "models": rows})
        click.echo(f"wrote {json_out}")
