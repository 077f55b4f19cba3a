"""Evidence run: does each int8 target's parity depend on the kernels (and so the CPU) that run it?

    .venv/bin/python -m kd_edge.benchmarks.int8_portability [--model M.keras] [--out benchmarks/results/int8_portability.json]

Converts the model (default: the embedded default student) to onnx-int8, tflite-int8 and tflite-dynamic at 256x256
(parity-gated) and scores each on the converter's probe images with every kernel family this host can run:

- LiteRT: XNNPACK (the default), the built-in optimised kernels (ruy), and the portable C++ reference kernels
  (``BUILTIN_REF``: plain int32 arithmetic, no SIMD, the same on every CPU);
- ONNX Runtime: the fused integer kernels (QLinearConv..., MLAS, ISA-specific) and the unfused QDQ graph
  (``ORT_DISABLE_ALL``: DequantizeLinear -> float op -> QuantizeLinear, no integer GEMM at all);
- onnx-int8 also through ``int8_saturation.emulate_without_vnni`` (end to end, every dense convolution computed as
  x86 without VNNI does: saturating int16 pair sums of ``vpmaddubsw``), the one documented kernel difference the
  other rows cannot show on a VNNI host; and, for contrast, the recipe kd-edge used before issue 14 the same ways.

If the fast kernels of this host score like the ISA-independent reference paths, the artifact's accuracy does not
come from this host's instruction set. The JSON records the host's CPU flags.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)

SIZE = 256
TARGETS = ("onnx-int8", "tflite-int8", "tflite-dynamic")


def litert_predict(path, x, resolver):
    """LiteRT on ``x`` (float32 NHWC, one image at a time) with an OpResolverType name (AUTO, BUILTIN,
    BUILTIN_REF); int8 I/O (de)quantised with the model's parameters."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=getattr(OpResolverType, resolver))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    ys = []
    for image in x:
        v = image[None]
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization"]
            v = np.clip(np.round(v / scale + zero), -128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], v)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        ys.append(np.asarray(y, np.float32)[0])
    return np.stack(ys)


def onnx_predict(path, x, fused):
    """ONNX Runtime on ``x``: ``fused`` True = all graph optimisations (integer kernels), False = none (QDQ run as
    float ops between DequantizeLinear/QuantizeLinear)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fused
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: image[None]})[0] for image in x]).astype(np.float32)


KERNELS = {
    "tflite": {"xnnpack": lambda p, x: litert_predict(p, x, "AUTO"),
               "builtin (ruy)": lambda p, x: litert_predict(p, x, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
               "reference (portable C++)": lambda p, x: litert_predict(p, x, "BUILTIN_REF")},
    "onnx": {"fused integer kernels (MLAS)": lambda p, x: onnx_predict(p, x, True),
             "unfused QDQ (float ops)": lambda p, x: onnx_predict(p, x, False)},
}


def kernel_parity(artifact, ecosystem, probes, reference):
    """{kernel family: minimum PSNR (dB) vs ``reference``, or why that family cannot run the artifact}."""
    from kd_edge.metrics import psnr

    out = {}
    for name, run in KERNELS[ecosystem].items():
        try:
            out[name] = float(np.min(np.atleast_1d(psnr(reference, run(artifact, probes)))))
        except (ValueError, RuntimeError) as exc:  # e.g. the reference resolver lacks an op version
            out[name] = f"not run: {str(exc).strip().splitlines()[0]}"
    return out


def main(argv=None):
    from kd_edge.atomic import write_json
    from kd_edge.benchmarks.host import local_host_facts
    from kd_edge.converters import convert, int8_saturation
    from kd_edge.converters.parity import probe_images
    from kd_edge.defaults import default_model_path
    from kd_edge.runtime import load

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help=".keras model (default: the embedded default student)")
    ap.add_argument("--out", default="benchmarks/results/int8_portability.json")
    args = ap.parse_args(argv)
    model = Path(args.model) if args.model else default_model_path("student")
    probes = probe_images(SIZE)
    reference = load(model).predict(probes)
    from kd_edge.benchmarks.onnx_int8_speed import previous_recipe
    from kd_edge.converters.parity import representative
    from kd_edge.metrics import psnr

    def emulated(path):
        return float(np.min(psnr(reference, int8_saturation.emulate_without_vnni(path, probes))))

    rows = {}
    with tempfile.TemporaryDirectory(prefix="kd-edge-int8-") as tmp:
        for result in convert(model, ["onnx-fp32", *TARGETS], tmp, input_size=SIZE):
            if result.target == "onnx-fp32":
                old = Path(tmp) / "previous-recipe.onnx"
                previous_recipe(result.artifact, old, representative(None, 32, SIZE))
                rows["onnx-int8 (recipe before issue 14)"] = {
                    "by_kernels": dict(kernel_parity(old, "onnx", probes, reference),
                                       **{"emulated x86 without VNNI": emulated(old)})}
                continue
            ecosystem = result.target.split("-")[0]
            row = {"gate_db": result.manifest["parity"]["threshold_db"],
                   "gated_psnr_db": result.manifest["parity"]["psnr_db"],
                   "by_kernels": kernel_parity(result.artifact, ecosystem, probes, reference)}
            if result.target == "onnx-int8":
                row["by_kernels"]["emulated x86 without VNNI"] = emulated(result.artifact)
                row["int16_saturation_on_probes"] = {
                    k: v for k, v in int8_saturation.probe_saturation(result.artifact, probes).items() if k != "layers"}
                row["quantization"] = result.manifest["int8"]["quantization"]
            rows[result.target] = row
        for target, row in rows.items():
            print(f"{target:15s} " + "  ".join(f"{k} {v:.2f} dB" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in row["by_kernels"].items()))
    doc = {"what": "parity (min PSNR vs Keras over the converter's 4 probe images at 256x256) of each int8 target "
                   "under every kernel family this host runs", "model": str(model), "host": local_host_facts(),
           "targets": rows}
    write_json(Path(args.out), doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
