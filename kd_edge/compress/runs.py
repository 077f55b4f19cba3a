"""End-to-end compression runs behind ``kd-edge prune`` and ``kd-edge quantize``.

Each run loads the parent model (``kd_edge.models.load_model``), compresses a copy, fine-tunes it with
distillation (``kd_edge.distill.trainer.train``; the teacher is ``--teacher`` or the unchanged parent itself),
saves ``<out>/model.keras`` with a manifest whose lineage names the parent's sha256, the method, the settings
and the steps, and writes a JSON report next to it. Fine-tuning state (checkpoints, TensorBoard, train.json)
lives in ``<out>/finetune``; rerunning the same command resumes it.
"""
import json
import time
from pathlib import Path

import numpy as np

import kd_edge  # noqa: F401
from kd_edge.atomic import write_json
from kd_edge.errors import KdEdgeError

DEFAULT_LR = 2e-4
MODEL_NAME = "model.keras"


def _prepare_out(out, force):
    out = Path(out)
    target = out / MODEL_NAME
    if target.exists() and not force:
        raise KdEdgeError(f"{target} already exists: use --force to replace it (or another --out)")
    out.mkdir(parents=True, exist_ok=True)
    return out, target


def model_file(path):
    """A ``.keras`` path as given, or ``<run folder>/model.keras`` for a training/compression run folder."""
    path = Path(path)
    if path.is_dir() and (path / MODEL_NAME).is_file():
        return path / MODEL_NAME
    return path


def _load(path, what="model"):
    from kd_edge.models import load_model

    model, manifest = load_model(model_file(path))
    return model, manifest


def _teacher(parent_path, teacher_path):
    """(frozen teacher model, description): ``--teacher`` or a fresh copy of the parent."""
    path = model_file(teacher_path or parent_path)
    model, manifest = _load(path, "teacher")
    model.trainable = False
    return model, {"path": str(path), "sha256": manifest.get("sha256"), "arch": manifest.get("arch"),
                   "role": "teacher" if teacher_path else "parent model as its own teacher"}


def _data_root(data, out, seed):
    from kd_edge.distill.datasets import resolve_data

    return resolve_data(data, out, seed=seed)


def fine_tune(student, *, teacher, teacher_info, data, out, steps, batch, patch, seed, lr, callbacks=(),
              progress=True, method="finetune", parent=None):
    """Distillation fine-tuning of ``student`` in place; returns the trainer's train.json as a dict.
    ``parent`` (the uncompressed model) is scored on the same held-out crops (see :func:`heldout`).

    Validation runs once at the end (``val_every=steps``), so the weights kept are the final ones: for
    pruning they are the ones at the target sparsity, never an earlier, denser step.
    """
    from kd_edge.distill.trainer import train

    root = _data_root(data, out, seed)
    run_dir = Path(out) / "finetune"
    train(student, teacher=teacher, data=root, out=run_dir, steps=int(steps), batch=int(batch), patch=int(patch),
          seed=int(seed), callbacks=list(callbacks), lr=float(lr), val_every=int(steps),
          ckpt_every=max(1, min(500, int(steps) // 4 or 1)), export=False, progress=progress, data_spec=str(data),
          method=method, teacher_info=teacher_info, parent=parent)
    info = json.loads((run_dir / "train.json").read_text())
    return {"dir": str(run_dir), "data": info.get("data"), "steps": int(steps), "batch": int(batch),
            "patch": int(patch), "lr": float(lr), "seed": int(seed), "losses": info.get("losses"),
            "teacher": teacher_info, "validation": info.get("best"),
            "history": info.get("history", [])[-1:]}


def heldout(tuned):
    """The held-out PSNR/SSIM of a compressed model beside its parent's and the blurred input's (same crops),
    for the reports and the printed summary; None without a held-out split."""
    v = (tuned or {}).get("validation")
    if not v:
        return None
    out = {"crops": v.get("crops"), "step": v.get("step"), "psnr_db": v.get("psnr"),
           "parent_psnr_db": v.get("parent_psnr"), "blurred_input_psnr_db": v.get("blurred_psnr")}
    if out["psnr_db"] is not None and out["parent_psnr_db"] is not None:
        out["vs_parent_db"] = out["psnr_db"] - out["parent_psnr_db"]
    if out["psnr_db"] is not None and out["blurred_input_psnr_db"] is not None:
        out["vs_blurred_input_db"] = out["psnr_db"] - out["blurred_input_psnr_db"]
    return out


def _complexity(model):
    from kd_edge.models import count_macs, count_params, model_stride

    stride = model_stride(model)
    size = max(stride, 256 // stride * stride)
    return {"params": int(count_params(model)), "macs_256": int(count_macs(model, size, size))}


# ---------------------------------------------------------------------------------------------- sparsity
def run_sparsity(model_path, out, *, sparsity=0.5, schedule="polynomial", steps=200, teacher=None, data="synth",
                 batch=8, patch=64, seed=0, lr=DEFAULT_LR, force=False, progress=True):
    """``kd-edge prune --sparsity``: tfmot prune_low_magnitude + distillation fine-tuning + strip_pruning."""
    model_path = model_file(model_path)
    import tensorflow_model_optimization as tfmot

    from kd_edge.compress import lineage, sparsity as sp
    from kd_edge.models import save_model

    if int(steps) < 1:
        raise KdEdgeError("--steps must be >= 1 for sparsity pruning (the masks are applied while training)")
    out, target = _prepare_out(out, force)
    parent, manifest = _load(model_path)
    schedule_obj = sp.make_schedule(schedule, sparsity, steps)
    student = sp.wrap_for_pruning(parent, schedule_obj)
    teacher_model, teacher_info = _teacher(model_path, teacher)
    t0 = time.perf_counter()
    tuned = fine_tune(student, teacher=teacher_model, teacher_info=teacher_info, data=data, out=out, steps=steps,
                      batch=batch, patch=patch, seed=seed, lr=lr, progress=progress, method="prune-sparsity",
                      callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], parent=parent)
    seconds = time.perf_counter() - t0
    pruned_names = {layer.layer.name for layer in student.layers if getattr(layer, "pruning_vars", None)}
    stripped = sp.strip(student)
    rows = sp.layer_sparsity(stripped)
    for row in rows:
        row["pruned"] = row["layer"] in pruned_names
    pruned_rows = [r for r in rows if r["pruned"]]
    pruned_total = sum(r["weights"] for r in pruned_rows)
    settings = {"sparsity": float(sparsity), "schedule": schedule, "frequency": int(schedule_obj.frequency),
                "begin_step": int(schedule_obj.begin_step), "end_step": int(getattr(schedule_obj, "end_step", -1)),
                "pruned_layers": sorted(pruned_names), "batch": int(batch), "patch": int(patch),
                "lr": float(lr), "seed": int(seed)}
    record = lineage.compression_step(model_path, manifest, method="prune-sparsity", settings=settings,
                                      steps=steps, fine_tune={k: tuned[k] for k in ("teacher", "data", "validation")})
    saved = save_model(stripped, target, arch=manifest.get("arch"), config=manifest.get("config"),
                       lineage=lineage.extend(manifest, record),
                       extra={"compression": {"method": "prune-sparsity", "sparsity": sp.overall_sparsity(stripped)}})
    report = {
        "format": "kd-edge-prune/1",
        "method": "sparsity",
        "model": str(target),
        "parent": record["parent"],
        "settings": settings,
        "fine_tune": tuned,
        "heldout": heldout(tuned),
        "seconds": seconds,
        "sparsity": {"target": float(sparsity), "overall": sp.overall_sparsity(stripped),
                     "pruned_kernels": sum(r["zeros"] for r in pruned_rows) / pruned_total if pruned_total else 0.0,
                     "parent_overall": sp.overall_sparsity(parent),
                     "note": "tfmot prunes Conv2D and Dense kernels; DepthwiseConv2D kernels stay dense (tfmot's "
                             "prune registry has no prunable weight for them), so the overall figure is lower"},
        "layers": rows,
        "size": {
            "parent_weights": sp.weight_sizes(parent), "pruned_weights": sp.weight_sizes(stripped),
            "parent_file": sp.file_sizes(model_path), "pruned_file": sp.file_sizes(target),
        },
        "complexity": {"parent": _complexity(parent), "pruned": _complexity(stripped)},
        "speed_note": sp.NOT_FASTER,
        "sha256": saved["sha256"],
    }
    write_json(out / "prune_report.json", report)
    return report


# ---------------------------------------------------------------------------------------------- filters
def run_filters(model_path, out, *, ratio=0.2, steps=200, teacher=None, data="synth", batch=8, patch=64, seed=0,
                lr=DEFAULT_LR, force=False, progress=True, min_channels=2):
    """``kd-edge prune --filters``: remove the lowest-L1 filters, rebuild narrower, distillation fine-tuning."""
    model_path = model_file(model_path)
    from kd_edge.compress import lineage
    from kd_edge.compress.filter_pruning import prune_filters
    from kd_edge.models import save_model

    out, target = _prepare_out(out, force)
    parent, manifest = _load(model_path)
    pruned, plan = prune_filters(parent, ratio, min_channels=min_channels)
    before, after = _complexity(parent), _complexity(pruned)
    tuned = None
    t0 = time.perf_counter()
    if int(steps) > 0:
        teacher_model, teacher_info = _teacher(model_path, teacher)
        tuned = fine_tune(pruned, teacher=teacher_model, teacher_info=teacher_info, data=data, out=out,
                          steps=steps, batch=batch, patch=patch, seed=seed, lr=lr, progress=progress,
                          method="prune-filters", parent=parent)
    seconds = time.perf_counter() - t0
    settings = {"filters": float(ratio), "ranking": "L1 norm of the producing filters, per-layer mean-normalised",
                "min_channels": int(min_channels), "batch": int(batch), "patch": int(patch), "lr": float(lr),
                "seed": int(seed)}
    channels = {row["layer"]: row["after"] for row in plan.layers}
    record = lineage.compression_step(model_path, manifest, method="prune-filters", settings=settings, steps=steps,
                                      channels=channels,
                                      fine_tune={k: tuned[k] for k in ("teacher", "data", "validation")}
                                      if tuned else None)
    saved = save_model(pruned, target, arch=manifest.get("arch"), config=manifest.get("config"),
                       lineage=lineage.extend(manifest, record),
                       extra={"compression": {"method": "prune-filters", "filters": float(ratio),
                                              "channels": channels}})
    report = {
        "format": "kd-edge-prune/1",
        "method": "filters",
        "model": str(target),
        "parent": record["parent"],
        "settings": settings,
        "fine_tune": tuned,
        "heldout": heldout(tuned),
        "seconds": seconds,
        "complexity": {"parent": before, "pruned": after,
                       "params_drop": 1.0 - after["params"] / before["params"],
                       "macs_drop": 1.0 - after["macs_256"] / before["macs_256"]},
        "layers": plan.layers,
        "families": plan.families,
        "size": {"parent_file": _file_size(model_path), "pruned_file": _file_size(target)},
        "sha256": saved["sha256"],
    }
    write_json(out / "prune_report.json", report)
    return report


def _file_size(path):
    return int(Path(path).stat().st_size)


# ---------------------------------------------------------------------------------------------- QAT / PTQ
def run_qat(model_path, out, *, steps=200, teacher=None, data="synth", batch=8, patch=64, seed=0, lr=1e-4,
            force=False, progress=True, preserve_sparsity="auto", calib=None, calib_count=32, tflite=True,
            input_size=None):
    """``kd-edge quantize --qat``: tfmot QAT (prune-preserving when sparse) + distillation fine-tuning.

    Writes ``<out>/model.keras`` (the QAT Keras model, loadable by ``kd_edge.models.load_model`` and
    convertible by ``kd-edge convert --target tflite-int8``) and, with ``tflite``, what that convert writes:
    ``<out>/model.tflite-int8.tflite`` (full integer, float I/O) and its manifest, gated on parity against the QAT
    Keras model (:func:`int8_artifact`); below the gate the artifact is not written and KdEdgeError is raised
    after the report.
    """
    model_path = model_file(model_path)
    from kd_edge.compress import lineage, qat
    from kd_edge.compress.sparsity import overall_sparsity

    if int(steps) < 1:
        raise KdEdgeError("--steps must be >= 1 for QAT (the quantization ranges are learnt while training)")
    out, target = _prepare_out(out, force)
    parent, manifest = _load(model_path)
    qmodel, info = qat.quantize_model(parent, preserve_sparsity=preserve_sparsity)
    from kd_edge.compress.calibration import calibration_images
    from kd_edge.models import model_stride

    stride = model_stride(parent)
    if tflite and input_size and int(input_size) % stride:  # before training, not after
        raise KdEdgeError(f"--input-size {input_size} is not a multiple of the model's stride {stride}")
    range_size = max(stride, 128 // stride * stride)
    range_images = calibration_images(calib, count=min(16, int(calib_count)), size=range_size)
    ranges_set = qat.calibrate_ranges(qmodel, parent, range_images)
    teacher_model, teacher_info = _teacher(model_path, teacher)
    t0 = time.perf_counter()
    tuned = fine_tune(qmodel, teacher=teacher_model, teacher_info=teacher_info, data=data, out=out, steps=steps,
                      batch=batch, patch=patch, seed=seed, lr=lr, progress=progress, method="qat",
                      parent=parent)
    seconds = time.perf_counter() - t0
    settings = {"scheme": info["scheme"], "float_layers": info["float_layers"],
                "initial_ranges": {"from": "float model outputs on calibration images", "images": len(range_images),
                                   "size": range_size, "ranges": int(ranges_set)},
                "batch": int(batch),
                "patch": int(patch), "lr": float(lr), "seed": int(seed)}
    record = lineage.compression_step(model_path, manifest, method="qat", settings=settings, steps=steps,
                                      fine_tune={k: tuned[k] for k in ("teacher", "data", "validation")})
    saved = qat.save_qat_model(qmodel, target, sample_shape=(1, stride * 2, stride * 2, 3),
                               arch=manifest.get("arch"), config=manifest.get("config"),
                               lineage=lineage.extend(manifest, record),
                               extra={"compression": {"method": "qat", "scheme": info["scheme"],
                                                      "float_layers": info["float_layers"]}})
    report = {
        "format": "kd-edge-quantize/1",
        "method": "qat",
        "model": str(target),
        "parent": record["parent"],
        "settings": settings,
        "parent_sparsity": overall_sparsity(parent),
        "fine_tune": tuned,
        "heldout": heldout(tuned),
        "seconds": seconds,
        "plan": info["plan"],
        "sha256": saved["sha256"],
    }
    if tflite:  # force: an int8 file already in OUT belongs to the QAT model this run has just replaced
        report["tflite"] = int8_artifact(target, out, calib=calib, calib_count=calib_count, size=input_size,
                                         force=True)
    write_json(out / "quantize_report.json", report)
    refuse_failed_int8(report, kept=target)
    return report


def run_ptq(model_path, out, *, calib=None, calib_count=32, input_size=256, force=False):
    """``kd-edge quantize --ptq``: exactly ``kd-edge convert MODEL -t tflite-int8 --out OUT`` (the same converter,
    calibration, parity gate and number), plus ``quantize_report.json`` with the lineage record."""
    model_path = model_file(model_path)
    from kd_edge.compress import lineage
    from kd_edge.models import read_manifest

    out = Path(out)
    entry = int8_artifact(model_path, out, calib=calib, calib_count=calib_count, size=input_size, force=force)
    record = lineage.compression_step(model_path, read_manifest(model_path), method="ptq-int8",
                                      settings={"calib": entry["calibration"], "input_size": input_size}, steps=0)
    report = {"format": "kd-edge-quantize/1", "method": "ptq", "parent": record["parent"], "tflite": entry}
    write_json(out / "quantize_report.json", report)
    refuse_failed_int8(report)
    return report


def int8_artifact(model_path, out, *, calib=None, calib_count=32, size=None, force=False):
    """The full-int8 TFLite of the model file ``model_path``, made by ``kd-edge convert``'s tflite-int8 target:
    one converter, one parity gate, one number everywhere an int8 artifact is written. Below the gate nothing is
    written (``written`` False), as in convert; the entry says why."""
    from kd_edge.converters import ParityGateError, convert
    from kd_edge.converters.pipeline import artifact_path, model_stem
    from kd_edge.converters.registry import get

    try:
        result = convert(model_path, ["tflite-int8"], out, input_size=size or 256, calib=calib,
                         calib_count=calib_count, force=force)[0]
    except ParityGateError as exc:
        result = exc.results[0]
    m = result.manifest
    return {"target": "tflite-int8", "written": result.artifact is not None,
            "path": str(result.artifact or artifact_path(out, model_stem(model_path), get("tflite-int8"))),
            "manifest": str(result.manifest_path) if result.manifest_path else None,
            "bytes": m.get("file_size"), "input_size": m.get("input_size"), "calibration": m.get("calibration"),
            "parity": m.get("parity"), "weights": m.get("weights"), "notes": m.get("notes"), "error": result.error}


def refuse_failed_int8(report, kept=None):
    """KdEdgeError when the report's int8 artifact failed its gate (it was not written; the report was)."""
    entry = report.get("tflite")
    if not entry or entry["written"]:
        return
    parity = entry.get("parity") or {}
    why = entry.get("error") or (f"int8 parity {parity['psnr_db']:.1f} dB vs the Keras model is below the "
                                 f"{parity['threshold_db']:.0f} dB gate (as `kd-edge convert` measures it)")
    kept_text = f"; the QAT model {kept} is kept" if kept else ""
    raise KdEdgeError(f"{entry['path']}: {why}; not written{kept_text}")


def run_tflite(content, images, threads=None):
    """Run a TFLite flatbuffer (LiteRT) on NHWC float32 images one at a time; returns the stacked outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=bytes(content), num_threads=threads)
    inp = interp.get_input_details()[0]
    if list(inp["shape"][1:3]) != list(images.shape[1:3]):
        interp.resize_tensor_input(inp["index"], [1, *images.shape[1:]])
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outp = interp.get_output_details()[0]
    results = []
    for img in np.asarray(images, np.float32):
        x = img[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(outp["index"])
        if outp["dtype"] != np.float32:
            scale, zero = outp["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y[0])
    return np.stack(results)
