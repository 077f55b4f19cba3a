"""Bench reports: a Markdown table with the P100 reference and roofline columns, PNG plots, and `compare`.

``markdown(doc)`` -> str, ``plots(doc, out_dir)`` -> [paths] (matplotlib Agg: latency by target and threads,
memory by target), ``compare(doc_a, doc_b)`` -> rows of B/A ratios, ``compare_text(rows)`` -> str.
"""
from pathlib import Path

from kd_edge.atomic import atomic_path
from kd_edge.benchmarks.host import describe


def _f(value, fmt="{:.2f}", empty="-"):
    return empty if value is None else fmt.format(value)


def _ok(doc):
    return [r for r in doc["results"] if r["status"] == "ok"]


def _parity_cell(parity):
    if not parity or not parity.get("measured"):
        return "-"
    return f"{parity['psnr_db']:.1f} ({parity['threshold_db']:g})" if parity.get("threshold_db") else f"{parity['psnr_db']:.1f}"


def markdown(doc):
    host, ref = doc["host"], doc["reference"]
    dev = doc["device"]
    where = {"local": "this host", "ssh": f"ssh {dev['target']}", "adb": f"adb device {dev['target']}"}[dev["kind"]]
    s = doc["settings"]
    lines = [
        f"# kd-edge bench ({doc['created_utc']})", "",
        f"- Measured on: {where}: {describe(host)}",
        f"- Settings: {s['runs']} runs after {s['warmup']} warm-up, threads {s['threads']}, sizes {s['sizes']}; "
        "each result in a fresh process" + (f", {s['repeats']} interleaved repeats (the median p50 is kept)"
                                            if s.get("repeats", 1) > 1 else ""),
        f"- P100 reference ({ref['device']}, {ref['input']['height']}x{ref['input']['width']}): "
        + ", ".join(f"{n} {m['latency_ms']} ms / {m['memory_mb'] / 1000:.1f} GB" for n, m in ref["models"].items())
        + ". Ratios are measured / P100 (latency scaled per pixel to 256x256 where the size differs; memory compares "
          "our peak host RSS with the report's memory footprint).",
    ]
    loads = [r["load_avg_1m"] for r in doc["results"] if r.get("load_avg_1m") is not None]
    if loads:
        cores = host.get("cores_available") or host.get("cores_logical")
        lines.append(f"- Load average (1 min) when the measurements started: {min(loads):.1f} to {max(loads):.1f} "
                     f"on {cores} cores" + (" (a busy machine: absolute timings are pessimistic, ratios within one run "
                                             "are the reliable part)" if cores and max(loads) > cores else ""))
    peak = doc.get("peak")
    if peak:
        fp = ", ".join(f"{t} thr {v:.0f}" for t, v in sorted(peak["fp32_gflops"].items(), key=lambda kv: int(kv[0])))
        i8 = ", ".join(f"{t} thr {v:.0f}" for t, v in sorted((peak.get("int8_gops") or {}).items(), key=lambda kv: int(kv[0])))
        lines.append(f"- Roofline peak ({peak['measured_utc']}): fp32 GFLOP/s {fp}" + (f"; int8 GOP/s {i8}" if i8 else ""))
    else:
        lines.append("- Roofline peak: not measured (run `kd-edge bench --peak` once on this host)")
    if doc.get("command"):
        lines.append(f"- Command: `{doc['command']}`")
    lines += ["", "| artifact | target | runtime | thr | size | p50 ms | p90 ms | mean ± std ms | init ms | first ms | "
              "MPix/s | parity dB here (gate) | peak RSS MB | Δ RSS MB | file KB | gzip KB | params | GMACs | GFLOP/s | "
              "floor ms | eff. | × P100 student (lat / mem) |",
              "|" + "---|" * 22]
    for r in doc["results"]:
        if r["status"] != "ok":
            continue
        lat = r["latency_ms"]
        vs = (r.get("vs_p100") or {}).get("student") or {}
        lines.append("| " + " | ".join([
            r["name"], r["target"], f"{r.get('runtime') or '-'} {r.get('runtime_version') or ''}".strip(),
            str(r["threads"]), str(r["size"]), _f(lat["p50"]), _f(lat.get("p90")), f"{lat['mean']:.2f} ± {lat['std']:.2f}",
            _f(r.get("init_ms"), "{:.1f}"), _f(r.get("first_inference_ms")), _f(r.get("mpix_per_s")),
            _parity_cell(r.get("parity")), _f(r.get("peak_rss_mb"), "{:.1f}"), _f(r.get("rss_delta_mb"), "{:.1f}"),
            _f(r.get("file_bytes") and r["file_bytes"] / 1024, "{:.1f}"), _f(r.get("gzip_bytes") and r["gzip_bytes"] / 1024, "{:.1f}"),
            _f(r.get("params"), "{:,}"), _f(r.get("macs") and r["macs"] / 1e9, "{:.3f}"), _f(r.get("gflops"), "{:.1f}"),
            _f(r.get("latency_floor_ms")), _f(r.get("efficiency") and 100 * r["efficiency"], "{:.0f}%"),
            f"{_f(vs.get('latency_ratio'))} / {_f(vs.get('memory_ratio'), '{:.3f}')}",
        ]) + " |")
    skipped = [r for r in doc["results"] if r["status"] != "ok"]
    if skipped:
        lines += ["", "Failed or not run:", ""]
        lines += [f"- {r['name']} (threads {r['threads']}, {r['size']}px): {r['status']}: {r['reason']}" for r in skipped]
    ratios = headline_ratios(doc)
    if ratios:
        lines += ["", "Ratios (p50 latency, same threads and size; < 1 means faster):", ""]
        lines += [f"- {text}" for text in ratios]
    if doc.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def _index(doc):
    return {(r["model"], r["target"], r["kind"], r["threads"], r["size"]): r for r in _ok(doc)}


def _fp32_litert(doc, r):
    for b in _ok(doc):
        if (b["kind"] == "tflite" and b.get("precision") == "fp32" and b["model"] == r["model"]
                and b["threads"] == r["threads"] and b["size"] == r["size"]):
            return b
    return None


def headline_ratios(doc):
    """int8/fp16/dynamic vs fp32 (LiteRT), ONNX Runtime and Keras vs LiteRT fp32, best artifact vs the P100 student."""
    out = []
    order = sorted(_ok(doc), key=lambda r: (r["model"], r["size"], r["threads"], r["kind"], r["target"]))
    for r in order:
        base = _fp32_litert(doc, r)
        if not base or base is r:
            continue
        ratio = r["latency_ms"]["p50"] / base["latency_ms"]["p50"]
        if r["kind"] == "tflite":
            label = f"LiteRT {r['target']} vs LiteRT {base['target']}"
        else:
            label = {"onnx": "ONNX Runtime", "keras": "Keras/TF", "coreml": "Core ML"}[r["kind"]]
            label = f"{label} {r['target']} vs LiteRT {base['target']}"
        out.append(f"{r['model']} {label} ({r['threads']} thr, {r['size']}px): {ratio:.2f}x")
    best = {}
    for r in _ok(doc):
        vs = (r.get("vs_p100") or {}).get("student")
        if vs and vs.get("latency_ratio") is not None:
            key = r["threads"]
            if key not in best or vs["latency_ratio"] < best[key][1]["latency_ratio"]:
                best[key] = (r, vs)
    for t, (r, vs) in sorted(best.items()):
        scaled = f" after per-pixel scaling from {r['size']}px to 256px" if vs.get("latency_scaled_to_256") else ""
        mem = f" (peak RSS {vs['memory_ratio']:.3f}x its 1.1 GB)" if vs.get("memory_ratio") is not None else ""
        out.append(f"fastest at {t} thr: {r['name']} {r['latency_ms']['p50']:.2f} ms = {vs['latency_ratio']:.2f}x the "
                   f"P100 student's 22 ms{scaled}{mem}")
    return out


def _save_figure(plt, fig, path):
    """Lay out, write atomically and close one figure; returns its path."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def plots(doc, out_dir):
    """latency_by_target.png and memory_by_target.png under out_dir. Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = _ok(doc)
    if not ok:
        return []
    size = max(r["size"] for r in ok)
    ok = [r for r in ok if r["size"] == size]
    labels = list(dict.fromkeys(f"{r['model']}\n{r['target']} ({r['kind']})" for r in ok))
    threads = sorted({r["threads"] for r in ok})
    written = []

    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.2))
    width = 0.8 / len(threads)
    for i, t in enumerate(threads):
        vals, errs = [], []
        for lab in labels:
            hit = [r for r in ok if f"{r['model']}\n{r['target']} ({r['kind']})" == lab and r["threads"] == t]
            vals.append(hit[0]["latency_ms"]["p50"] if hit else 0)
            errs.append(((hit[0]["latency_ms"].get("p90") or hit[0]["latency_ms"]["p50"]) - hit[0]["latency_ms"]["p50"]) if hit else 0)
        xs = [j + (i - (len(threads) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, vals, width, yerr=[[0] * len(errs), errs], capsize=2, label=f"{t} thread{'s' if t > 1 else ''}")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("p50 latency (ms), bar to p90")
    ax.set_title(f"Latency by target and threads, {size}x{size} ({doc['host'].get('cpu_model')})", fontsize=9)
    ax.legend(fontsize=8)
    written.append(_save_figure(plt, fig, out_dir / "latency_by_target.png"))

    t0 = threads[0]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.2))
    base, delta = [], []
    for lab in labels:
        hit = [r for r in ok if f"{r['model']}\n{r['target']} ({r['kind']})" == lab and r["threads"] == t0]
        r = hit[0] if hit else {}
        base.append(r.get("runtime_rss_mb") or 0)
        delta.append(r.get("rss_delta_mb") or 0)
    ax.bar(range(len(labels)), base, 0.6, label="bare runtime RSS", color="#bbbbbb")
    ax.bar(range(len(labels)), delta, 0.6, bottom=base, label="model: peak RSS over the runtime")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("peak resident memory (MiB)")
    ax.set_title(f"Memory by target, {t0} thread(s), {size}x{size}", fontsize=9)
    ax.legend(fontsize=8)
    written.append(_save_figure(plt, fig, out_dir / "memory_by_target.png"))
    return written


def compare(doc_a, doc_b):
    """Rows matching results of B to A by (artifact name, threads, size), else (model, target, kind, threads, size)."""
    by_name = {(r["name"], r["threads"], r["size"]): r for r in _ok(doc_a)}
    by_key = _index(doc_a)
    rows = []
    for b in _ok(doc_b):
        a = by_name.get((b["name"], b["threads"], b["size"])) or by_key.get(
            (b["model"], b["target"], b["kind"], b["threads"], b["size"]))
        if not a:
            continue
        pa, pb = a["latency_ms"]["p50"], b["latency_ms"]["p50"]
        ma, mb = a.get("peak_rss_mb"), b.get("peak_rss_mb")
        rows.append({"name": b["name"], "threads": b["threads"], "size": b["size"], "p50_a": pa, "p50_b": pb,
                     "latency_ratio": pb / pa, "peak_rss_a": ma, "peak_rss_b": mb,
                     "memory_ratio": (mb / ma) if (ma and mb) else None})
    return rows


def compare_text(rows, doc_a, doc_b, name_a="A", name_b="B"):
    lines = [f"A: {name_a}  ({describe(doc_a['host'])})", f"B: {name_b}  ({describe(doc_b['host'])})", ""]
    if not rows:
        return "\n".join(lines + ["no result of B matches a result of A (same artifact, threads and size)"]) + "\n"
    head = f"{'artifact':<34} {'thr':>3} {'size':>5} {'p50 A ms':>10} {'p50 B ms':>10} {'B/A':>6} {'RSS A MB':>9} {'RSS B MB':>9} {'B/A':>6}"
    lines += [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:<34} {r['threads']:>3} {r['size']:>5} {r['p50_a']:>10.2f} {r['p50_b']:>10.2f} "
                     f"{r['latency_ratio']:>6.2f} {_f(r['peak_rss_a'], '{:.1f}'):>9} {_f(r['peak_rss_b'], '{:.1f}'):>9} "
                     f"{_f(r['memory_ratio']):>6}")
    return "\n".join(lines) + "\n"
