"""PNG figures of the report (matplotlib, Agg canvas, no pyplot state): PSNR/SSIM densities per model, PSNR vs
SSIM scatter, and qualitative comparisons (blurred / models / sharp with zoomed centre crops)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kd_edge.atomic import atomic_path
from kd_edge.report import stats

DPI = 110
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _style(result, column):
    """Colour and line style: models solid in palette order, the blurred floor grey dashed, baselines dotted."""
    if column == "blurred":
        return {"color": "#7f7f7f", "linestyle": "--"}
    if column in result.baselines:
        return {"color": ["#bcbd22", "#17becf"][result.baselines.index(column) % 2], "linestyle": ":"}
    names = [m.name for m in result.models]
    return {"color": _PALETTE[names.index(column) % len(_PALETTE)], "linestyle": "-"}


def density_plot(result, metric, path):
    """Density (Gaussian KDE, plus a light histogram) of ``metric`` ('psnr' or 'ssim') for every column."""
    data = getattr(result, metric)
    values = np.concatenate([v[np.isfinite(v)] for v in data.values()]) if data else np.array([])
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = max((hi - lo) * 0.1, 0.5 if metric == "psnr" else 0.01)
    grid = np.linspace(lo - pad, hi + pad, 400)
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(lo - pad, hi + pad, 31)
    for column in result.columns:
        v = data[column][np.isfinite(data[column])]
        if v.size == 0:
            continue
        style = _style(result, column)
        ax.hist(v, bins=bins, density=True, alpha=0.12, color=style["color"])
        mean = float(v.mean())
        label = f"{column} (mean {mean:.2f} dB)" if metric == "psnr" else f"{column} (mean {mean:.3f})"
        ax.plot(grid, stats.gaussian_kde(v, grid), label=label, linewidth=1.8, **style)
    if metric == "ssim":
        ax.axvline(stats.SSIM_THRESHOLD, color="black", linewidth=0.8, alpha=0.5)
    ax.set_xlabel("PSNR (dB)" if metric == "psnr" else "SSIM")
    ax.set_ylabel("density")
    ax.set_title(f"{metric.upper()} distribution over {len(result.images)} test images")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return _save(fig, path)


def scatter_plot(result, path):
    """PSNR against SSIM per image for every model (the correlation the original report quotes)."""
    fig = _figure(6.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for column in result.columns:
        x, y = result.psnr[column], result.ssim[column]
        keep = np.isfinite(x) & np.isfinite(y)
        if not keep.any():
            continue
        r = stats.pearson(x, y)
        r_text = "n/a" if not np.isfinite(r) else f"{r:.2f}"
        style = _style(result, column)
        ax.scatter(x[keep], y[keep], s=14, color=style["color"], alpha=0.75,
                   marker="x" if column == "blurred" else "o", label=f"{column} (r={r_text})")
    ax.set_xlabel("PSNR (dB)")
    ax.set_ylabel("SSIM")
    ax.set_title("PSNR vs SSIM per image (Pearson r per model)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return _save(fig, path)


def sample_figure(result, sample, path):
    """Blurred / each model / sharp side by side (top), the zoomed centre crop of each (bottom), with scores."""
    from matplotlib.patches import Rectangle

    index = result.images.index(sample.name)
    panels = [("Blurred input", sample.blur, "blurred")]
    panels += [(m.name, sample.outputs[m.name], m.name) for m in result.models]
    panels += [("Sharp (ground truth)", sample.sharp, None)]
    top, left, size = sample.crop
    height, width = sample.blur.shape[:2]
    col_w = 3.0
    img_h = col_w * height / width
    fig = _figure(col_w * len(panels), img_h + col_w + 0.9)
    ratios = [img_h, col_w]
    grid = fig.add_gridspec(2, len(panels), height_ratios=ratios, hspace=0.12, wspace=0.04)
    for j, (title, image, column) in enumerate(panels):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, edgecolor="yellow", linewidth=1.2))
        if column is None:
            subtitle = "reference"
        else:
            subtitle = f"PSNR {result.psnr[column][index]:.2f} | SSIM {result.ssim[column][index]:.4f}"
        ax.set_title(f"{title}\n{subtitle}", fontsize=9)
        ax.axis("off")
        zoom = fig.add_subplot(grid[1, j])
        zoom.imshow(np.clip(image[top: top + size, left: left + size], 0, 1), interpolation="nearest")
        zoom.set_title(f"centre crop {size} px", fontsize=8)
        zoom.axis("off")
    fig.suptitle(f"{sample.name}  ({width}x{height}; crop and image picked with seed {result.seed})", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.86)
    return _save(fig, path)


def write_figures(result, out_dir):
    """All figures into ``out_dir``; returns {key: file name} (names relative to out_dir)."""
    out_dir = Path(out_dir)
    files = {
        "psnr_density": density_plot(result, "psnr", out_dir / "psnr_density.png").name,
        "ssim_density": density_plot(result, "ssim", out_dir / "ssim_density.png").name,
        "psnr_vs_ssim": scatter_plot(result, out_dir / "psnr_vs_ssim.png").name,
    }
    for k, sample in enumerate(result.samples, start=1):
        files[f"sample_{k}"] = sample_figure(result, sample, out_dir / f"sample_{k}.png").name
    return files
