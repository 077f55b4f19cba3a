"""Convert one Keras model to many targets: convert to a temp file, inspect, gate on parity, then
publish the artifact and its manifest by rename. A failed target leaves nothing behind."""
import datetime as _dt
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kd_edge.converters import manifest as mf
from kd_edge.converters import registry, weight_facts
from kd_edge.converters.parity import probe_file_path
from kd_edge.errors import KdEdgeError

DEFAULT_INPUT_SIZE = 256


class InputSizeError(KdEdgeError, ValueError):
    """--input-size is not a positive integer multiple of the model stride (a usage error: exit 2)."""


class ParityGateError(KdEdgeError):
    """At least one artifact failed its parity gate; ``results`` holds every target's outcome."""

    def __init__(self, message, results):
        super().__init__(message)
        self.results = results


@dataclass
class ConversionResult:
    target: str
    artifact: Path | None        # None when the gate failed (nothing was kept)
    manifest_path: Path | None
    manifest: dict
    passed: bool | None          # None: parity not measurable here (Core ML off macOS)
    seconds: float = 0.0
    error: str | None = None     # the target could not be built or run (nothing was kept)

    def summary(self) -> str:
        if self.error:
            return f"{self.target:15s} FAILED: {self.error}  (not written)  [{self.seconds:.1f} s]"
        return self._summary_line() + "".join(f"\n{'':15s}   note: {n}" for n in self.manifest.get("notes") or ())

    def _summary_line(self) -> str:
        parity = self.manifest.get("parity", {})
        if parity.get("measured"):
            verdict = "ok" if self.passed else "FAILED"
            gate = f"{parity['psnr_db']:.1f} dB (gate {parity['threshold_db']:.0f} dB) {verdict}"
        else:
            gate = f"parity not measured: {parity.get('reason', '')}"
        where = self.artifact if self.artifact else "(not written)"
        size = self.manifest.get("file_size")
        size_txt = f"{size / 1024:.1f} KiB" if size else ""
        return f"{self.target:15s} {gate}  {size_txt}  {where}  [{self.seconds:.1f} s]"


def resolve_targets(names):
    """Expand 'all', drop duplicates, keep order; unknown names raise KdEdgeError listing valid ones."""
    available = registry.targets()
    out = []
    for name in ([names] if isinstance(names, str) else list(names)):
        expanded = list(available) if name == "all" else [registry.get(name).name]
        out += [n for n in expanded if n not in out]
    if not out:
        raise KdEdgeError(f"no target given; valid targets: {', '.join(available)}, all")
    return out


def parse_input_size(value):
    """256 / '256' -> (256, 256); 'dynamic' / None -> None. Raises InputSizeError."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "dynamic"):
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(parse_input_size(v)[0] for v in value)
    try:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        size = int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
    except (TypeError, ValueError):
        raise InputSizeError(f"input size must be a positive integer or 'dynamic', got {value!r}") from None
    if size <= 0:
        raise InputSizeError(f"input size must be a positive integer or 'dynamic', got {value!r}")
    return (size, size)


def check_input_size(size, stride):
    if size is None:
        return
    for v in size:
        if v % stride:
            lower, upper = (v // stride) * stride, (v // stride + 1) * stride
            near = f"{lower} or {upper}" if lower > 0 else f"{upper}"
            raise InputSizeError(f"input size {v} is not a multiple of the model stride {stride} (try {near})")


def model_stem(model_path) -> str:
    name = Path(model_path).name
    return name[: -len(".keras")] if name.endswith(".keras") else Path(name).stem


def artifact_path(out_dir, stem, target) -> Path:
    return Path(out_dir) / f"{stem}.{target.name}{target.suffix}"


def _remove(path):
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _probe_sets(size, stride, calib):
    from kd_edge.converters.parity import probe_images

    if size is not None:
        return [probe_images(size[0], calib)]
    up = lambda v: -(-v // stride) * stride  # noqa: E731
    # dynamic: two different shapes, one non-square, to exercise the resize path
    return [probe_images(up(128))[:2], probe_images((up(96), up(160)))[:2]]


def _source_record(source):
    record = {"path": str(source.path), "file": source.path.name, "sha256": source.sha256,
              "arch": source.arch, "config": source.config}
    if source.manifest:
        for key in ("lineage", "kd_edge_version", "format"):
            if key in source.manifest:
                record[key] = source.manifest[key]
    return record


def _quant_record(io_records):
    q = {}
    for side in ("inputs", "outputs"):
        for rec in io_records[side]:
            if "quantization" in rec:
                q[f"{side[:-1]}:{rec['name']}"] = {"dtype": rec["dtype"], **rec["quantization"]}
    return q


def build_manifest(target, source, size, tmp_artifact, final_artifact, extra, facts, parity, options):
    io_records = {"inputs": facts.pop("inputs"), "outputs": facts.pop("outputs")}
    ops = facts.pop("ops", {})
    manifest = {
        "format": mf.MANIFEST_FORMAT,
        "target": target.name,
        "ecosystem": target.ecosystem,
        "precision": target.precision,
        "description": target.description,
        "artifact": final_artifact.name,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "input_size": list(size) if size else "dynamic",
        "dynamic_shape": size is None,
        "layout": mf.LAYOUT,
        "value_range": mf.VALUE_RANGE,
        "normalisation": mf.NORMALISATION,
        **io_records,
        "int8_io": bool(_quant_record(io_records)),
        "io_quantization": _quant_record(io_records),
        "tiling": mf.recommended_tiling(size, source.stride),
        "stride": source.stride,
        "params": source.params,
        "macs_256": source.macs_256,
        **mf.file_facts(tmp_artifact),
        "source_model": _source_record(source),
        "tools": mf.tool_versions(),
        "parity": parity,
        "ops": ops,
        "op_count": int(sum(ops.values())),
        **facts,
        **extra,
    }
    return manifest


def _add_note(facts, note):
    """Append ``note`` (if any) to the manifest facts' ``notes``, printed under the artifact's row."""
    if note:
        facts["notes"] = list(facts.get("notes") or []) + [note]


def convert_one(target, source, out_dir, size, options, log=print):
    final = artifact_path(out_dir, source.stem, target)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    tmp_manifest = tmp.with_name(tmp.name + ".json")
    tmp_probe = tmp.with_name(tmp.name + ".parity.npz")
    try:
        extra = target.convert(source, tmp, options) or {}
        facts = target.inspect(tmp)
        facts.update(weight_facts.record(target, tmp, mf.size_of(tmp), mf.sha256_of(tmp),
                                         (options.get("fp32_built") or {}).get(target.ecosystem)))
        if target.ecosystem == "tflite" and target.precision == "int8":  # ONNX folds the clip into its Q/DQ
            from kd_edge.models.gate_clip import int8_clip_note

            _add_note(facts, int8_clip_note(source.model))
        if target.precision == "fp16":  # a GPU delegate computes in fp16; parity on a CPU cannot show overflow
            from kd_edge.converters.fp16_range import fp16_range, fp16_range_note

            facts["fp16_range"] = fp16_range(source)
            _add_note(facts, fp16_range_note(facts["fp16_range"]))
        parity, probe_bytes = _run_gate(target, source, tmp, size, options)
        manifest = build_manifest(target, source, size, tmp, final, extra, facts, parity, options)
        passed = parity.get("passed")
        if passed is False:
            return ConversionResult(target.name, None, None, manifest, False)
        mf_path = mf.manifest_path(final)
        mf.write_manifest_file(tmp_manifest, manifest)
        tmp_probe.write_bytes(probe_bytes)
        # publish: the artifact and its parity probe first, then the manifest that vouches for both
        if final.is_dir():
            _remove(final)
        os.replace(tmp, final)
        os.replace(tmp_probe, probe_file_path(final))
        os.replace(tmp_manifest, mf_path)
        return ConversionResult(target.name, final, mf_path, manifest, passed)
    finally:
        _remove(tmp)
        _remove(tmp_manifest)
        _remove(tmp_probe)


def convert_guarded(target, source, out_dir, size, options):
    """convert_one, with any failure of this target (converter, runtime, inspection) turned into a result
    with ``error`` (one line that names the artifact, never its hidden temp file), so other targets still run.
    A passing fp32 artifact is remembered in ``options["fp32_built"]`` for the size notes of later targets."""
    start = time.perf_counter()
    from kd_edge.quiet_import import native_stderr_silenced

    try:
        with native_stderr_silenced():  # converter and runtime C++ log lines only with --verbose
            result = convert_one(target, source, out_dir, size, options)
    except Exception as exc:  # noqa: BLE001 - one target's failure is reported in the table, not fatal
        final = artifact_path(out_dir, source.stem, target)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = re.sub(r"[^\s'\"(]*\." + re.escape(final.name) + r"\.[0-9a-f]{8}\.tmp[^\s'\":)]*", final.name, text)
        result = ConversionResult(target.name, None, None, {}, False, error=text)
    result.seconds = time.perf_counter() - start
    if result.passed and target.precision == "fp32":
        options.setdefault("fp32_built", {})[target.ecosystem] = {
            "target": target.name, "file_size": result.manifest.get("file_size"), "sha256": result.manifest.get("sha256")}
    return result


def _failure(result):
    if result.error:
        return f"{result.target}: {result.error}"
    parity = result.manifest["parity"]
    return f"{result.target} {parity['psnr_db']:.1f} dB < {parity['threshold_db']:.0f} dB"


def _run_gate(target, source, tmp, size, options):
    """(parity record, bytes of the ``.parity.npz`` sidecar that lets bench re-measure parity on its host)."""
    from kd_edge.converters.parity import PROBE_SEED, gate, measure_on_probe, target_probe
    from kd_edge.runtime import RUNTIMES

    probe_bytes, inputs, reference, probe = target_probe(source, size, source.stride)
    probe.update(file=probe_file_path(artifact_path(".", source.stem, target)).name, threshold_db=target.gate_db)
    if target.ecosystem == "coreml":
        from kd_edge.converters.coreml import can_execute, not_measured

        if not can_execute():
            return dict(not_measured(target), target_probe=dict(probe, psnr_db=None), host=cpu_facts()), probe_bytes
    runtime = RUNTIMES[target.ecosystem](tmp, None, False, threads=options.get("threads"))
    parity = gate(target, source, runtime, _probe_sets(size, source.stride, options.get("calib")))
    calib = options.get("calib")
    parity["probe_source"] = (f"crops of {calib} (seed {PROBE_SEED})" if calib and size is not None
                              else f"built-in synthetic blurred scenes (seed {PROBE_SEED})")
    parity["target_probe"] = dict(probe, psnr_db=measure_on_probe(runtime, inputs, reference))
    parity["host"] = cpu_facts()
    return parity, probe_bytes


def cpu_facts():
    """The CPU the gate ran on: int8 kernels differ by instruction set (avx2, avx512_vnni, asimddp...)."""
    from kd_edge.benchmarks.runner import host_facts

    facts = host_facts()
    return {k: facts[k] for k in ("cpu_model", "machine", "isa_flags")}


def convert(model_path, targets, out_dir, *, input_size=DEFAULT_INPUT_SIZE, calib=None, calib_count=32,
            force=False, int8_io=False, threads=None, log=None):
    """Convert ``model_path`` (.keras) to each target; returns a ConversionResult per target.

    Raises KdEdgeError for an unknown target, an unreadable model or an existing artifact without
    ``force``; InputSizeError for a bad size; ParityGateError (after trying every target) if any
    artifact failed its gate or could not be built (that artifact is not written; its result says why)."""
    from kd_edge.converters.source import load_source

    log = log or (lambda msg: None)
    names = resolve_targets(targets)
    size = parse_input_size(input_size)
    out_dir = Path(out_dir)
    chosen = [registry.get(n) for n in names]
    if size is None:
        unsupported = [t.name for t in chosen if not t.supports_dynamic]
        if unsupported:
            raise InputSizeError(f"--input-size dynamic is not supported by: {', '.join(unsupported)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise KdEdgeError(f"{out_dir}: --out is not a directory")
    if not force:  # before loading anything: refuse early
        for t in chosen:
            final = artifact_path(out_dir, model_stem(model_path), t)
            for p in (final, mf.manifest_path(final)):
                if p.exists():
                    raise KdEdgeError(f"{p}: already exists (use --force to overwrite)")
    source = load_source(model_path)
    check_input_size(size, source.stride)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {"input_size": size, "calib": calib, "calib_count": calib_count, "int8_io": int8_io, "threads": threads}
    results = []
    for t in chosen:
        log(f"converting {source.path.name} -> {t.name} ...")
        result = convert_guarded(t, source, out_dir, size, options)
        results.append(result)
    failed = [r for r in results if r.passed is False]
    if failed:
        detail = "; ".join(_failure(r) for r in failed)
        what = "parity gate failed" if not any(r.error for r in failed) else \
            f"{len(failed)} of {len(results)} targets failed"
        raise ParityGateError(f"{what} ({detail}); those artifacts were not written", results)
    return results
