"""Parity gate: run an artifact in its real runtime on probe images and compare with the Keras model.

Probe images are deterministic blurred images: the calibration set when ``--calib`` is given (first
``count`` of kd_edge.data.pipeline.representative_images), else built-in synthetic blurred scenes.
"""
import numpy as np

from kd_edge.errors import KdEdgeError
from kd_edge.metrics import psnr

PROBE_COUNT = 4
PROBE_SEED = 1234


def synthetic_blurred(count, size, seed=PROBE_SEED):
    """Deterministic blurred synthetic scenes (rectangles, discs, lines, texture), float32 NxHxWx3 in [0,1]."""
    import cv2

    h, w = (size, size) if np.isscalar(size) else size
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        img = np.full((h, w, 3), rng.uniform(0.1, 0.9, 3), np.float32)
        for _ in range(12):
            color = tuple(float(c) for c in rng.uniform(0, 1, 3))
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            kind = rng.integers(0, 3)
            if kind == 0:
                cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(4, w // 2 + 5)), y0 + int(rng.integers(4, h // 2 + 5))), color, -1)
            elif kind == 1:
                cv2.circle(img, (x0, y0), int(rng.integers(3, max(4, min(h, w) // 4))), color, -1)
            else:
                cv2.line(img, (x0, y0), (int(rng.integers(0, w)), int(rng.integers(0, h))), color, int(rng.integers(1, 4)))
        img += rng.normal(0, 0.02, img.shape).astype(np.float32)
        length = int(rng.integers(3, 12))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        kernel /= max(kernel.sum(), 1e-6)
        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
        images.append(np.clip(img, 0, 1))
    return np.stack(images).astype(np.float32)


def representative(calib, count, size, seed=0):
    """Calibration images: kd_edge.data.pipeline.representative_images when available, else synthetic."""
    try:
        from kd_edge.data.pipeline import representative_images
    except ImportError:
        representative_images = None
    if representative_images is not None:
        return np.asarray(representative_images(calib, count=count, size=size, seed=seed), np.float32)
    if calib is not None:
        return _images_from_dir(calib, count, size)
    return synthetic_blurred(count, size, seed=seed + 1)


def _images_from_dir(calib, count, size):
    """Stand-in for representative_images(dir): centre crops of the first images (blur/ if present)."""
    import cv2
    from pathlib import Path

    root = Path(calib)
    folder = root / "blur" if (root / "blur").is_dir() else root
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"))
    if not files:
        raise KdEdgeError(f"{calib}: no calibration images found")
    out = []
    for f in files[:count]:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise KdEdgeError(f"{f}: unreadable calibration image")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        h, w = img.shape[:2]
        if min(h, w) < size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        else:
            y, x = (h - size) // 2, (w - size) // 2
            img = img[y : y + size, x : x + size]
        out.append(img)
    return np.stack(out)


def probe_images(size, calib=None, count=PROBE_COUNT):
    if calib is not None:
        return representative(calib, count, size, seed=PROBE_SEED)
    return synthetic_blurred(count, size)


def compare(reference, candidate) -> dict:
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise KdEdgeError(f"artifact output shape {candidate.shape} differs from the Keras output {reference.shape}")
    values = np.atleast_1d(psnr(reference, candidate))
    return {
        "psnr_db": float(np.min(values)),
        "psnr_db_mean": float(np.mean(values)),
        "max_abs_diff": float(np.max(np.abs(reference - candidate))),
        "probe_images": int(reference.shape[0]),
        "probe_shape": list(reference.shape[1:]),
    }


def gate(target, source, runtime, probes_by_size) -> dict:
    """Run ``runtime`` on each probe set, compare with Keras; return the parity record (``passed``)."""
    records = []
    for probes in probes_by_size:
        reference = source.predict(probes)
        candidate = runtime.predict(probes)
        records.append(compare(reference, candidate))
    worst = min(records, key=lambda r: r["psnr_db"])
    return {
        "measured": True,
        "runtime": runtime.kind,
        "psnr_db": worst["psnr_db"],
        "max_abs_diff": max(r["max_abs_diff"] for r in records),
        "threshold_db": target.gate_db,
        "passed": bool(worst["psnr_db"] >= target.gate_db and np.isfinite(worst["max_abs_diff"])),
        "metric": "minimum PSNR (dB, max_val 1) over probe images vs the Keras model",
        "probes": records,
    }


# --------------------------------------------------------------------------------------- parity on the target
TARGET_PROBE_COUNT = 2
TARGET_PROBE_SEED = PROBE_SEED + 1
TARGET_PROBE_DYNAMIC = (64, 96)  # probe H, W for dynamic-shape artifacts (rounded up to the stride)


def probe_file_path(artifact):
    """The sidecar ``<artifact>.parity.npz`` that lets ``kd-edge bench`` re-measure parity where it runs."""
    from pathlib import Path

    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".parity.npz")


def target_probe(source, size, stride):
    """(npz bytes, inputs, stored reference, record) for the sidecar: ``inputs`` uint8 N x H x W x 3 (the model input is inputs / 255, so
    any machine rebuilds it exactly) and ``reference`` the Keras output on them as float16 (a compact copy:
    the float16 rounding alone scores ``storage_floor_db``, far above every gate)."""
    import hashlib
    import io

    if size is None:
        size = tuple(-(-v // stride) * stride for v in TARGET_PROBE_DYNAMIC)
    images = synthetic_blurred(TARGET_PROBE_COUNT, size, seed=TARGET_PROBE_SEED)
    inputs = np.round(images * 255.0).astype(np.uint8)
    reference = np.asarray(source.predict(inputs.astype(np.float32) / np.float32(255.0)), np.float32)
    stored = reference.astype(np.float16)
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=inputs, reference=stored)
    data = buf.getvalue()
    record = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "images": int(len(inputs)), "shape": list(inputs.shape[1:]), "seed": TARGET_PROBE_SEED,
        "generator": "kd_edge.converters.parity.synthetic_blurred, rounded to uint8",
        "inputs": "uint8; the model input is inputs / 255 (float32 NHWC)",
        "reference": "the Keras model's output on those inputs, stored as float16",
        "reference_sha256": hashlib.sha256(reference.tobytes()).hexdigest(),
        "storage_floor_db": float(np.min(np.atleast_1d(psnr(reference, stored.astype(np.float32))))),
        "metric": "minimum PSNR (dB, max_val 1) over the probe images vs the stored reference",
    }
    return data, inputs, stored, record


def measure_on_probe(runtime, inputs, reference) -> float:
    """Minimum PSNR of ``runtime`` on the sidecar's probe against its stored reference."""
    candidate = runtime.predict(inputs.astype(np.float32) / np.float32(255.0))
    return float(np.min(np.atleast_1d(psnr(reference.astype(np.float32), candidate))))
