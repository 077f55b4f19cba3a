"""Set (or turn off) the input clip of every :class:`~kd_edge.models.layers.SimpleGate` of a model, weights untouched.

Bounded gates (``a * tanh(b)``, the default, and ``a * sigmoid(b)``) are at most linear in their input by
construction and need no clip; the clip lowers to int8 MINIMUM/MAXIMUM, which LiteRT's XNNPACK delegate does not
take, so it cuts a full-int8 graph into many delegate partitions (``benchmarks/int8_gate_clip.py``). Fresh builds of
bounded gates have no clip; these functions rewrite models saved with one.

The rewrite is made on the saved file: only the model config changes (``config.json`` of a ``.keras`` zip, the
``model_config`` attribute of kd-edge's HDF5 layout for pruning/QAT models), every other byte, the weights
included, is copied as it is. That works for plain, pruned and QAT-wrapped models alike (rebuilding a QAT model from
its config in memory creates its input quantizer's variables twice, so ``set_weights`` cannot copy them).
"""
import copy
import json
import zipfile
from pathlib import Path

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.atomic import atomic_path, write_json
from kd_edge.errors import InputFileError


def _set_in_config(node, clip):
    """Set ``clip`` on every SimpleGate config below ``node`` (in place); return how many were found."""
    found = 0
    if isinstance(node, dict):
        if str(node.get("class_name", "")).endswith("SimpleGate") and isinstance(node.get("config"), dict):
            node["config"]["clip"] = clip
            found += 1
        for value in node.values():
            found += _set_in_config(value, clip)
    elif isinstance(node, list):
        for value in node:
            found += _set_in_config(value, clip)
    return found


def _rewrite_zip(src, tmp, clip):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w") as zout:
        gates = 0
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                gates = _set_in_config(config, clip)
                data = json.dumps(config).encode("utf-8")
            zout.writestr(info, data)
    return gates


def _rewrite_h5(src, tmp, clip):
    """Copy every group and attribute into a new file (an attribute rewritten in place would leave the old one's
    space unreclaimed), with the new ``model_config``."""
    import h5py

    with h5py.File(src, "r") as fin, h5py.File(tmp, "w") as fout:
        for name in fin:
            fin.copy(fin[name], fout, name=name)
        for key, value in fin.attrs.items():
            fout.attrs[key] = value
        raw = fin.attrs["model_config"]
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        gates = _set_in_config(config, clip)
        fout.attrs["model_config"] = json.dumps(config)
    return gates


def rewrite_gate_clip(src, dst, clip):
    """Write ``dst``: the model file ``src`` with every SimpleGate's input clip set to ``clip`` (None: no clip).

    ``dst`` gets a manifest: ``src``'s (its sha256 is checked first) with the new file name and sha256 and a lineage
    step ``{"method": "set-gate-clip", "clip", "gates", "from_sha256"}``. ``src`` is never modified; ``dst`` is
    written atomically and must differ from it. Returns the new manifest. InputFileError names the file on bad input.
    """
    from kd_edge.converters.manifest import sha256_of
    from kd_edge.models.loading import _layout
    from kd_edge.models.saving import manifest_path, read_manifest

    src, dst = Path(src), Path(dst)
    clip = None if clip is None else float(clip)
    if not src.is_file():
        raise InputFileError(src, "no such model file")
    if dst.suffix != ".keras":
        raise InputFileError(dst, "a model file must end in .keras")
    if dst.resolve() == src.resolve():
        raise InputFileError(dst, "is the source model: write the rewritten model to another file")
    manifest = read_manifest(src) or {}
    digest = sha256_of(src)
    if manifest.get("sha256") and manifest["sha256"] != digest:
        raise InputFileError(src, f"sha256 {digest[:12]}... does not match its manifest: the file was modified")
    layout = _layout(src)
    if layout not in ("zip", "h5"):
        raise InputFileError(src, f"a {layout} model: only .keras zip and HDF5 files can be rewritten")
    with atomic_path(dst) as tmp:
        gates = (_rewrite_zip if layout == "zip" else _rewrite_h5)(src, tmp, clip)
        if not gates:
            raise InputFileError(src, "has no SimpleGate layer: there is no gate clip to set")
        new_digest = sha256_of(tmp)
    out = copy.deepcopy(manifest)
    out.update({"file": dst.name, "sha256": new_digest})
    out.setdefault("format", "keras")
    out["lineage"] = list(out.get("lineage") or []) + [
        {"method": "set-gate-clip", "clip": clip, "gates": gates, "from_sha256": digest}]
    write_json(manifest_path(dst), out)
    return out


def with_gate_clip(model, clip):
    """The same network and weights as the in-memory ``model`` with every SimpleGate's clip set to ``clip``.

    Returns ``(twin, gates)``. Goes through :func:`rewrite_gate_clip` on a temporary file, so it covers QAT and
    pruning wrappers too.
    """
    import tempfile

    from kd_edge.models.loading import load_model
    from kd_edge.models.saving import save_model

    with tempfile.TemporaryDirectory(prefix="kd-edge-gate-clip-") as tmp:
        tmp = Path(tmp)
        save_model(model, tmp / "model.keras", arch=getattr(model, "kd_edge_arch", None),
                   config=getattr(model, "kd_edge_config", None))
        manifest = rewrite_gate_clip(tmp / "model.keras", tmp / "twin.keras", clip)
        twin, _ = load_model(tmp / "twin.keras")
    return twin, manifest["lineage"][-1]["gates"]


def clipped_bounded_gates(model) -> int:
    """How many bounded (sigmoid or tanh) SimpleGates of ``model`` (QAT- or pruning-wrapped ones included) still
    clip their inputs."""
    from kd_edge.models.layers import SimpleGate

    count = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # tfmot wrappers hold the wrapped layer as .layer
        if isinstance(inner, SimpleGate) and inner.bounded and inner.clip is not None:
            count += 1
    return count


def int8_clip_note(model):
    """The note an int8 artifact's manifest gets when its source still clips bounded gates, else None."""
    count = clipped_bounded_gates(model)
    if not count:
        return None
    return (f"{count} bounded gates clip their inputs: int8 MINIMUM/MAXIMUM that XNNPACK does not delegate, so the "
            f"graph runs in several partitions; kd_edge.models.gate_clip.rewrite_gate_clip(model, out, None) removes "
            f"the clip with the same weights (benchmarks/int8_gate_clip.py measures it)")
