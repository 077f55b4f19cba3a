"""The numbers of the report, computed from the per-image scores: aggregates, correlation, shares, retention."""
from __future__ import annotations

import math

import numpy as np

SSIM_THRESHOLD = 0.9


def _valid(values):
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def aggregate(values):
    """mean, std (population), median, p10, p90, min, max, n over the finite values (NaN when there are none)."""
    v = _valid(values)
    if v.size == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "median": nan, "p10": nan, "p90": nan, "min": nan, "max": nan}
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v)),
            "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90)),
            "min": float(v.min()), "max": float(v.max())}


def pearson(x, y):
    """Pearson r of PSNR and SSIM over images where both are finite; NaN with < 3 images or a constant series."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def share_above(values, threshold=SSIM_THRESHOLD):
    """Fraction of scored images strictly above ``threshold``."""
    v = _valid(values)
    return float("nan") if v.size == 0 else float(np.mean(v > threshold))


def column_summary(result, column):
    return {
        "psnr": aggregate(result.psnr[column]),
        "ssim": aggregate(result.ssim[column]),
        "psnr_ssim_r": pearson(result.psnr[column], result.ssim[column]),
        "share_ssim_above_0_9": share_above(result.ssim[column]),
    }


def teacher_name(result):
    """The model named 'teacher' (any case), else the first model when there are several; None for one model."""
    names = [m.name for m in result.models]
    for name in names:
        if name.lower() == "teacher":
            return name
    return names[0] if len(names) > 1 else None


def retention(result, summaries=None):
    """For every model other than the teacher: % of the teacher's mean PSNR and SSIM, and the share of the
    teacher's PSNR (and SSIM) gain over the blurred input that it keeps. {} with a single model."""
    teacher = teacher_name(result)
    if teacher is None:
        return {}
    summaries = summaries or {c: column_summary(result, c) for c in result.columns}
    t_psnr = summaries[teacher]["psnr"]["mean"]
    t_ssim = summaries[teacher]["ssim"]["mean"]
    b_psnr = summaries["blurred"]["psnr"]["mean"]
    b_ssim = summaries["blurred"]["ssim"]["mean"]
    out = {}
    for model in result.models:
        if model.name == teacher:
            continue
        s_psnr = summaries[model.name]["psnr"]["mean"]
        s_ssim = summaries[model.name]["ssim"]["mean"]
        psnr_share, psnr_note = _gain_share(s_psnr, t_psnr, b_psnr)
        ssim_share, ssim_note = _gain_share(s_ssim, t_ssim, b_ssim)
        out[model.name] = {
            "teacher": teacher,
            "psnr_pct": _ratio(s_psnr, t_psnr),
            "ssim_pct": _ratio(s_ssim, t_ssim),
            "psnr_gain_share_pct": psnr_share,
            "ssim_gain_share_pct": ssim_share,
            "psnr_gain_share_note": psnr_note,
            "ssim_gain_share_note": ssim_note,
            "delta_psnr_db": s_psnr - t_psnr,
            "delta_ssim": s_ssim - t_ssim,
            "params_pct": _ratio(model.params, _params_of(result, teacher)),
        }
    return out


BELOW_INPUT = "n/a: below the blurred input"
TEACHER_BELOW_INPUT = "n/a: the teacher is not above the blurred input"


def _gain_share(model, teacher, blurred):
    """(share of the teacher's gain over the blurred input in %, None) or (NaN, why it means nothing): a model
    below the blurred input keeps no gain, and a teacher with no gain gives nothing to share."""
    if not all(math.isfinite(float(v)) for v in (model, teacher, blurred)):
        return float("nan"), None
    if model < blurred:
        return float("nan"), BELOW_INPUT
    if teacher <= blurred:
        return float("nan"), TEACHER_BELOW_INPUT
    return _ratio(model - blurred, teacher - blurred), None


def below_blurred_input(result, summaries=None):
    """{model: {"psnr_db": mean PSNR - blurred input's, "ssim": likewise}} for every model whose mean PSNR or SSIM
    is below the blurred input's: it makes the images worse on average, whatever else the report says."""
    summaries = summaries or {c: column_summary(result, c) for c in result.columns}
    b_psnr = summaries["blurred"]["psnr"]["mean"]
    b_ssim = summaries["blurred"]["ssim"]["mean"]
    out = {}
    for model in result.models:
        d_psnr = summaries[model.name]["psnr"]["mean"] - b_psnr
        d_ssim = summaries[model.name]["ssim"]["mean"] - b_ssim
        if d_psnr < 0 or d_ssim < 0:
            out[model.name] = {"psnr_db": d_psnr, "ssim": d_ssim}
    return out


def conversion_sources(result):
    """{artifact name: source model name} for evaluated artifacts whose manifest names an evaluated source model
    (by sha256, else by file name)."""
    from pathlib import Path

    out = {}
    for artifact in result.models:
        source = artifact.manifest.get("source_model")
        if not isinstance(source, dict):
            continue
        for model in result.models:
            if model is artifact:
                continue
            sha = model.manifest.get("sha256")
            if (source.get("sha256") and sha and source["sha256"] == sha) or (
                    not source.get("sha256") and source.get("file") == Path(model.path).name):
                out[artifact.name] = model.name
                break
    return out


def conversion_cost(result):
    """What conversion cost each artifact against its evaluated source model: mean and worst per-image change of
    PSNR and SSIM, and the parity PSNR the converter recorded (artifact vs source output)."""
    out = {}
    for artifact, source in conversion_sources(result).items():
        d_psnr = np.asarray(result.psnr[artifact]) - np.asarray(result.psnr[source])
        d_ssim = np.asarray(result.ssim[artifact]) - np.asarray(result.ssim[source])
        parity = next((m.manifest.get("parity") for m in result.models if m.name == artifact), None) or {}
        out[artifact] = {
            "source": source,
            "delta_psnr_db_mean": float(np.nanmean(d_psnr)), "delta_psnr_db_worst": float(np.nanmin(d_psnr)),
            "delta_ssim_mean": float(np.nanmean(d_ssim)), "delta_ssim_worst": float(np.nanmin(d_ssim)),
            "parity_psnr_db": parity.get("psnr_db") if isinstance(parity, dict) else None,
        }
    return out


def _params_of(result, name):
    for m in result.models:
        if m.name == name:
            return m.params
    return None


def _ratio(a, b):
    if a is None or b is None:
        return float("nan")
    a, b = float(a), float(b)
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return float("nan")
    return 100.0 * a / b


def summarize(result):
    """Everything numeric the report states, as a JSON-ready dict (NaN stays NaN; the writer turns it to null)."""
    summaries = {c: column_summary(result, c) for c in result.columns}
    return {
        "images": len(result.images),
        "columns": summaries,
        "teacher": teacher_name(result),
        "retention": retention(result, summaries),
        "below_blurred_input": below_blurred_input(result, summaries),
        "conversion": conversion_cost(result),
        "do_no_harm": do_no_harm(result),
        "grid_artifacts": grid_artifacts(result),
        "regions": region_gains(result),
    }


def do_no_harm(result):
    """{model: aggregate of PSNR(model(sharp), sharp) over the images} where it was measured; {} otherwise."""
    return {name: aggregate(values) for name, values in (getattr(result, "do_no_harm", None) or {}).items()}


def region_gains(result):
    """{column: {"blurred": aggregate, "unblurred": aggregate}} of the per-image gain (dB) inside and outside the
    region the blur changed (kd_edge.report.regions), over the images where the region covers >= 1% of the pixels."""
    return {column: {region: aggregate(values) for region, values in split.items()}
            for column, split in (getattr(result, "regions", None) or {}).items()}


def grid_artifacts(result):
    """{model: {worst, median, visible (count at or above VISIBLE_LEVELS), n, period}} of the stride-locked lattice
    each model added to the evaluated images (8-bit levels, kd_edge.grid_artifacts.added_grid)."""
    from kd_edge.grid_artifacts import summarize

    out = {}
    periods = getattr(result, "grid_period", None) or {}
    for name, values in (getattr(result, "grid", None) or {}).items():
        s = summarize(values)
        if s["images"]:
            out[name] = {"worst": s["worst_levels"], "median": s["median_levels"], "visible": s["visible_count"],
                         "n": s["images"], "period": periods.get(name)}
    return out


def gaussian_kde(values, grid):
    """Gaussian kernel density of ``values`` on ``grid`` with Silverman's bandwidth (floored so that a constant
    series still draws a narrow peak). Plain numpy, deterministic."""
    v = _valid(values)
    grid = np.asarray(grid, dtype=np.float64)
    if v.size == 0:
        return np.zeros_like(grid)
    spread = v.std(ddof=1) if v.size > 1 else 0.0
    iqr = np.subtract(*np.percentile(v, [75, 25])) / 1.349 if v.size > 1 else 0.0
    scale = min(spread, iqr) if iqr > 0 else spread
    span = float(grid.max() - grid.min()) if grid.size > 1 else 1.0
    bandwidth = max(0.9 * scale * v.size ** (-0.2), span / 200.0, 1e-6)
    z = (grid[:, None] - v[None, :]) / bandwidth
    return np.exp(-0.5 * z * z).sum(axis=1) / (v.size * bandwidth * math.sqrt(2 * math.pi))
