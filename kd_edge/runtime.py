"""One runtime loader for every model format kd-edge produces.

``load(path, threads=None)`` returns a :class:`Runtime` for a Keras model (``.keras``, ``.h5`` or a
SavedModel folder, read by :func:`kd_edge.models.load_model`), a TFLite
model (``.tflite``, run by LiteRT), an ONNX model (``.onnx``, run by ONNX Runtime) or a Core ML
package (``.mlpackage``; executes on macOS only). ``predict(x)`` always takes and returns float32
NHWC images in [0, 1]; integer I/O is quantised/dequantised with the model's own parameters, and a
batch larger than the artifact's fixed batch is run image by image.

Before loading, the sha256 in the manifest (``<artifact>.json``) is checked: a modified artifact
fails with an error naming the file. An artifact without a manifest loads with ``verified = False``
and a warning.
"""
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from kd_edge.errors import InputFileError, KdEdgeError

KINDS = {".keras": "keras", ".h5": "keras", ".hdf5": "keras", ".tflite": "tflite", ".onnx": "onnx",
         ".mlpackage": "coreml"}


class UnverifiedArtifactWarning(UserWarning):
    """The artifact has no manifest, so its sha256 could not be checked."""


def litert_interpreter():
    """The LiteRT Interpreter class; tflite_runtime only when ai_edge_litert is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise KdEdgeError("no TFLite interpreter: install ai-edge-litert (or tflite-runtime on old boards)") from exc
    return Interpreter


class Runtime:
    """A loaded model. Subclasses implement ``_predict_batch`` for at most ``max_batch`` images."""

    kind = None

    def __init__(self, path, manifest, verified):
        self.path = Path(path)
        self.manifest = manifest or {}
        self.verified = verified
        self.input_size = None   # (H, W) when the artifact has a fixed spatial size
        self.max_batch = None    # 1 for fixed batch-1 artifacts, None for any batch

    def __repr__(self):
        return f"<{type(self).__name__} {self.path.name} input_size={self.input_size} max_batch={self.max_batch}>"

    def predict(self, x):
        """float32 NHWC in [0, 1] (a single HxWx3 image also works) -> float32 NHWC."""
        x = np.asarray(x, np.float32)
        single = x.ndim == 3
        if single:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise KdEdgeError(f"{self.path.name}: expected NHWC RGB input, got shape {x.shape}")
        if self.input_size is not None and tuple(x.shape[1:3]) != tuple(self.input_size):
            raise KdEdgeError(f"{self.path.name}: fixed input size {self.input_size[0]}x{self.input_size[1]}, "
                              f"got {x.shape[1]}x{x.shape[2]} (tile the image: kd_edge.tiling.deblur)")
        step = self.max_batch or len(x)
        out = [self._predict_batch(x[i : i + step]) for i in range(0, len(x), step)]
        y = np.concatenate(out, axis=0).astype(np.float32, copy=False)
        return y[0] if single else y

    def _predict_batch(self, x):  # pragma: no cover - abstract
        raise NotImplementedError


def _quantize(x, scale, zero_point, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(q, scale, zero_point):
    return (q.astype(np.float32) - zero_point) * np.float32(scale)


class KerasRuntime(Runtime):
    kind = "keras"

    def __init__(self, path, manifest, verified, threads=None):
        super().__init__(path, manifest, verified)
        from kd_edge.models import load_model

        self.model, own_manifest = load_model(path, verify=False)  # load() has checked the sha256
        self.manifest = manifest or own_manifest or {}
        shape = self.model.input_shape
        if shape[1] is not None and shape[2] is not None:
            self.input_size = (int(shape[1]), int(shape[2]))
        self.max_batch = None if shape[0] is None else int(shape[0])

    def _predict_batch(self, x):
        return self.model(x, training=False).numpy()


class TFLiteRuntime(Runtime):
    kind = "tflite"

    def __init__(self, path, manifest, verified, threads=None):
        super().__init__(path, manifest, verified)
        Interpreter = litert_interpreter()
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            detail = self.interpreter.get_input_details()[0]
            sig = [int(v) for v in detail.get("shape_signature", detail["shape"])]
            if sig[1] < 0 or sig[2] < 0:
                # dynamic H x W: the placeholder shape is 1x1, which a strided model cannot even plan for;
                # allocate at the recommended tile size instead (predict resizes to each input's shape)
                side = int((self.manifest.get("tiling") or {}).get("tile", 256))
                self.interpreter.resize_tensor_input(detail["index"], [1, side, side, 3], strict=False)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(path, f"LiteRT cannot load it ({exc})") from exc
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        sig = [int(v) for v in self._in.get("shape_signature", self._in["shape"])]
        self._dynamic = sig[1] < 0 or sig[2] < 0
        self.input_size = None if self._dynamic else (sig[1], sig[2])
        self.max_batch = None if sig[0] < 0 else sig[0]
        self._shape = tuple(int(v) for v in self._in["shape"])

    def _predict_batch(self, x):
        interp = self.interpreter
        if tuple(x.shape) != self._shape:
            interp.resize_tensor_input(self._in["index"], list(x.shape), strict=False)
            interp.allocate_tensors()
            self._in = interp.get_input_details()[0]
            self._out = interp.get_output_details()[0]
            self._shape = tuple(x.shape)
        dtype = np.dtype(self._in["dtype"])
        if np.issubdtype(dtype, np.integer):
            scale, zero = self._in["quantization"]
            x = _quantize(x, scale, zero, dtype)
        interp.set_tensor(self._in["index"], x)
        interp.invoke()
        y = interp.get_tensor(self._out["index"])
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = self._out["quantization"]
            y = _dequantize(y, scale, zero)
        return np.array(y, np.float32)


class OnnxRuntime(Runtime):
    kind = "onnx"

    def __init__(self, path, manifest, verified, threads=None):
        super().__init__(path, manifest, verified)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(path, f"ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0]})") from exc
        self._in = self.session.get_inputs()[0]
        self._out = self.session.get_outputs()[0]
        shape = self._in.shape
        fixed = [isinstance(v, int) and v > 0 for v in shape]
        self.input_size = (shape[1], shape[2]) if fixed[1] and fixed[2] else None
        self.max_batch = shape[0] if fixed[0] else None
        self._type = self._in.type  # e.g. tensor(float)

    def _predict_batch(self, x):
        feed = x.astype(np.float16) if self._type == "tensor(float16)" else x
        return np.asarray(self.session.run([self._out.name], {self._in.name: feed})[0], np.float32)


class CoreMLRuntime(Runtime):
    kind = "coreml"

    def __init__(self, path, manifest, verified, threads=None):
        super().__init__(path, manifest, verified)
        import coremltools as ct

        self._can_run = sys.platform == "darwin"
        try:
            self.model = ct.models.MLModel(str(path), skip_model_load=not self._can_run)
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(path, f"Core ML cannot load it ({str(exc).strip().splitlines()[0]})") from exc
        spec = self.model.get_spec()
        self._in_name = spec.description.input[0].name
        self._out_name = spec.description.output[0].name
        array = spec.description.input[0].type.multiArrayType
        shape = [int(v) for v in array.shape]
        ranges = array.shapeRange.sizeRanges
        dynamic = bool(ranges) and any(r.upperBound != r.lowerBound for r in ranges)
        if len(shape) == 4 and not dynamic:
            self.input_size = (shape[1], shape[2])
        self.max_batch = 1

    def _predict_batch(self, x):
        if not self._can_run:
            raise KdEdgeError(f"{self.path.name}: Core ML execution needs macOS (this is {sys.platform}); "
                              "the package loads and its spec is valid, but it cannot run here")
        out = self.model.predict({self._in_name: x})
        return np.asarray(out[self._out_name], np.float32)


RUNTIMES = {"keras": KerasRuntime, "tflite": TFLiteRuntime, "onnx": OnnxRuntime, "coreml": CoreMLRuntime}


def kind_of(path) -> str:
    """'keras' (.keras, .h5, a SavedModel folder), 'tflite', 'onnx' or 'coreml'; InputFileError otherwise."""
    from kd_edge.models.loading import is_savedmodel

    path = Path(path)
    if is_savedmodel(path):
        return "keras"
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise InputFileError(path, f"unknown model format {path.suffix or '(no suffix)'!r}; expected one of "
                                   f"{', '.join(KINDS)} or a SavedModel folder")
    return kind


def read_manifest(path):
    """The manifest beside ``path`` (``<path>.json``), or None."""
    mpath = Path(path).with_name(Path(path).name + ".json")
    if not mpath.exists():
        return None
    try:
        return json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(mpath, f"unreadable manifest ({exc})") from exc


def verify(path, manifest) -> bool:
    """Check the artifact's sha256 against its manifest. True if verified, False if there is no hash."""
    from kd_edge.converters.manifest import sha256_of

    expected = (manifest or {}).get("sha256")
    if not expected:
        return False
    actual = sha256_of(path)
    if actual != expected:
        raise InputFileError(path, f"sha256 mismatch: the file was modified or corrupted after conversion "
                                   f"(manifest {expected[:12]}..., file {actual[:12]}...)")
    return True


def load(path, *, threads=None, verify_hash=True) -> Runtime:
    """Load any kd-edge model for inference. ``threads``: CPU threads for LiteRT / ONNX Runtime."""
    path = Path(path)
    kind = kind_of(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    manifest = read_manifest(path)
    verified = verify(path, manifest) if verify_hash else False
    if verify_hash and not verified:
        why = "has no manifest" if manifest is None else "has no sha256 in its manifest"
        warnings.warn(f"{path}: {why}; loading it unverified", UnverifiedArtifactWarning, stacklevel=2)
    return RUNTIMES[kind](path, manifest, verified, threads=threads)
