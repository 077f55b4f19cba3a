"""Facts about the machine a benchmark ran on (CPU model, cores, ISA flags, OS, runtime versions).

The collection itself lives in the standalone runner (so a remote board reports its own facts);
this module adds what only the controlling machine knows (kd-edge version).
"""
from kd_edge import __version__
from kd_edge.benchmarks import runner

ISA_HIGHLIGHTS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp", "i8mm", "sve")


def local_host_facts():
    facts = runner.host_facts()
    facts["kd_edge_version"] = __version__
    return facts


def describe(facts):
    """One line: 'AMD EPYC, 2 cores (avx2 avx512f avx512_vnni), Linux 6.1, litert 2.3.0, onnxruntime 1.23'."""
    if not facts:
        return "unknown host"
    flags = [f for f in ISA_HIGHLIGHTS if f in facts.get("isa_flags", [])]
    cores = facts.get("cores_available") or facts.get("cores_logical")
    rt = facts.get("runtimes", {})
    versions = ", ".join(f"{k} {v}" for k, v in rt.items() if k in ("ai-edge-litert", "tflite-runtime", "onnxruntime", "tensorflow"))
    flag_text = f" ({' '.join(flags)})" if flags else ""
    return f"{facts.get('cpu_model')}, {cores} cores{flag_text}, {facts.get('os')}" + (f", {versions}" if versions else "")
