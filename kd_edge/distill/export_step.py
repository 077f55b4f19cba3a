"""Export the model of any kept checkpoint of a training run, not only the step its validation picked.

A run keeps its best-by-validation weights as ``model.keras``; on a flat validation curve that pick is a weak
signal (issue 13, teacher v22: 24 crops chose step 6,000 of 14,000 by 0.01 dB, and step 14,000 scored 0.4 dB
higher on both held-out sets and 3 dB higher on do no harm). ``export_step`` restores ``<run>/ckpt/ckpt-<step>``
into the run's architecture and saves it with the run's lineage, its last record saying which step was exported.
"""
from __future__ import annotations

import json
from pathlib import Path

from kd_edge.errors import InputFileError, KdEdgeError


def kept_steps(run_dir) -> list:
    """The steps of the checkpoints kept in ``<run_dir>/ckpt``, ascending."""
    folder = Path(run_dir) / "ckpt"
    steps = []
    for index in folder.glob("ckpt-*.index"):
        suffix = index.stem.split("-", 1)[1]
        if suffix.isdigit():
            steps.append(int(suffix))
    return sorted(steps)


def export_step(run_dir, step: int, out):
    """Save the weights of ``<run_dir>/ckpt/ckpt-<step>`` to ``out`` (.keras, + manifest); returns the manifest."""
    import tensorflow as tf

    from kd_edge.models import save_model
    from kd_edge.models.loading import load_model

    run_dir, out = Path(run_dir), Path(out)
    source = run_dir / "model.keras"
    if not source.is_file():
        raise InputFileError(run_dir, "not a finished training run (no model.keras to take the architecture from)")
    steps = kept_steps(run_dir)
    checkpoint = run_dir / "ckpt" / f"ckpt-{step}"
    if int(step) not in steps:
        raise InputFileError(run_dir / "ckpt", f"no checkpoint of step {step}; kept: "
                                               f"{', '.join(map(str, steps)) or 'none'}")
    if out.resolve() == source.resolve():
        raise KdEdgeError(f"{out}: that is the run's own model.keras; refusing to overwrite it (choose another --out)")
    model, manifest = load_model(source)
    status = tf.train.Checkpoint(student=model).restore(str(checkpoint))
    try:
        status.assert_existing_objects_matched()
    except AssertionError as exc:
        raise InputFileError(checkpoint, f"does not match the run's model ({str(exc).splitlines()[0]})") from None
    status.expect_partial()  # the optimizer's slots and the best-score counters are not wanted here
    lineage = list(manifest.get("lineage") or [])
    record = dict(lineage[-1]) if lineage else {}
    record.update(best_step=int(step), exported_step=int(step), exported_from=f"ckpt/ckpt-{step}")
    validation = validation_at(run_dir, step)
    return save_model(model, out, arch=manifest.get("arch"), config=manifest.get("config"),
                      lineage=lineage[:-1] + [record], extra={"validation": validation})


def validation_at(run_dir, step):
    """The run's validation record at ``step`` (train.json history), or None when it did not validate there."""
    path = Path(run_dir) / "train.json"
    try:
        history = json.loads(path.read_text()).get("history") or []
    except (OSError, ValueError):
        return None
    return next((dict(h) for h in history if int(h.get("step", -1)) == int(step)), None)
