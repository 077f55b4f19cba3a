"""``kd-edge quantize --check``: every layer, whether QAT will quantize it, and why."""
from collections import Counter

from kd_edge.compress.qat import SPARSE_THRESHOLD, quantize_plan


def check(model):
    """{"layers": [{layer, class, quantized, why}], "quantized": n, "float": n, "sparsity": x, "scheme": ...}."""
    from kd_edge.compress.sparsity import overall_sparsity

    rows = quantize_plan(model)
    sparsity = overall_sparsity(model)
    return {
        "layers": rows,
        "quantized": sum(r["quantized"] for r in rows),
        "float": sum(not r["quantized"] for r in rows),
        "float_layers": [r["layer"] for r in rows if not r["quantized"]],
        "sparsity": sparsity,
        "scheme": "Default8BitPrunePreserveQuantizeScheme (model is sparse)" if sparsity >= SPARSE_THRESHOLD
        else "Default8BitQuantizeScheme",
        "by_reason": dict(Counter(r["why"] for r in rows)),
    }


def format_check(result):
    lines = [f"{'layer':<34} {'class':<24} {'int8':<5} why"]
    for r in result["layers"]:
        lines.append(f"{r['layer']:<34} {r['class']:<24} {'yes' if r['quantized'] else 'NO':<5} {r['why']}")
    lines.append(f"{result['quantized']} layers quantized, {result['float']} stay float"
                 + (f" ({', '.join(result['float_layers'])})" if result["float_layers"] else "")
                 + f"; kernel sparsity {result['sparsity'] * 100:.1f}% -> {result['scheme']}")
    return "\n".join(lines)
