"""The training loop shared by train-teacher, distill and compression fine-tuning.

``train(student, teacher=None, data=..., out=..., steps=...)`` trains ``student`` (any tf_keras model,
tfmot-wrapped ones included) through a ``Distiller``, step by step with Keras' own compiled train function and
the usual Keras callback hooks (so ``tfmot.sparsity.keras.UpdatePruningStep`` and friends work), and:

- checkpoints ``<out>/ckpt/ckpt-<step>`` (tf.train.CheckpointManager, keep the last ``keep``) holding the
  student, the optimizer state (iterations, moments), the adapters and the best validation score;
- resumes automatically from the latest checkpoint in ``<out>/ckpt`` at the exact step;
- on Ctrl-C / SIGTERM stops at the next step boundary, saves a checkpoint and raises ``KeyboardInterrupt``
  (the CLI exits 130);
- stops on a NaN/Inf loss with ``KdEdgeError`` without saving the bad state (the last good checkpoint stays);
  a checkpoint is only ever written when every student weight is finite;
- validates PSNR/SSIM (kd_edge.metrics) every ``val_every`` steps on the held-out split (with ``val_sharp``,
  also how much the model changes sharp photos: :mod:`kd_edge.distill.harm_validation`), keeps the best
  weights in ``<out>/best`` and exports them at the end through ``kd_edge.models.save_model`` to
  ``<out>/model.keras`` (+ manifest with lineage);
- writes TensorBoard scalars and sample images under ``<out>/tb`` and everything else (seeds, settings,
  history, speed) to ``<out>/train.json``.
"""
import contextlib
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from kd_edge import metrics
from kd_edge.atomic import write_json
from kd_edge.distill import datasets, harm_validation, summaries
from kd_edge.distill.distiller import Distiller
from kd_edge.distill.losses import LossWeights
from kd_edge.distill.strategies import is_chief, make_strategy
from kd_edge.errors import KdEdgeError

DEFAULT_LR = 1e-3


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``lr * final_ratio`` at ``total``."""

    def __init__(self, lr, total, warmup=0, final_ratio=0.01):
        super().__init__()
        self.lr, self.total, self.warmup, self.final_ratio = float(lr), int(total), int(warmup), float(final_ratio)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(max(self.warmup, 1), tf.float32)
        decay_steps = tf.cast(max(self.total - self.warmup, 1), tf.float32)
        progress = tf.clip_by_value((step - self.warmup) / decay_steps, 0.0, 1.0)
        cosine = self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        warmup = tf.minimum((step + 1.0) / warm, 1.0) if self.warmup > 0 else 1.0
        return self.lr * warmup * cosine

    def get_config(self):
        return {"lr": self.lr, "total": self.total, "warmup": self.warmup, "final_ratio": self.final_ratio}


def make_optimizer(lr=DEFAULT_LR, *, schedule="cosine", steps=1000, warmup=None, clipnorm=None):
    if schedule == "cosine":
        warmup = min(100, steps // 20) if warmup is None else int(warmup)
        rate = WarmupCosine(lr, steps, warmup)
    elif schedule == "constant":
        rate = float(lr)
    else:
        raise KdEdgeError(f"unknown learning-rate schedule {schedule!r}; expected cosine or constant")
    kwargs = {"global_clipnorm": float(clipnorm)} if clipnorm else {}
    return keras.optimizers.Adam(learning_rate=rate, beta_1=0.9, beta_2=0.99, **kwargs)


def _all_finite(variables):
    return all(bool(np.all(np.isfinite(v.numpy()))) for v in variables)


def model_stride_of(model, default=16):
    try:
        from kd_edge.models import model_stride

        return int(model_stride(model))
    except Exception:  # noqa: BLE001 - wrapped/foreign models: fall back to a safe multiple
        return default


def load_validation_set(root, *, count=4, crop=256, stride=16):
    """Up to ``count`` held-out (name, blur, sharp) center crops (multiples of ``stride``) as float32 arrays, in name
    order, skipping crops whose blurred side equals the sharp one (``data synth --identity`` pairs): their PSNR is
    capped at 100 dB, so one of them in 12 crops lifted the blurred input's mean by about 6 dB and let how well a
    model copied that one crop decide the best step."""
    split = datasets.heldout_split(root)
    if split is None:
        return []
    from kd_edge.data.pipeline import eval_pairs

    out = []
    for name, blur, sharp in eval_pairs(split):
        if len(out) >= count:
            break
        b, s = datasets.center_crop(blur, crop, stride), datasets.center_crop(sharp, crop, stride)
        if b is not None and not np.array_equal(b, s):
            out.append((name, b.astype(np.float32), s.astype(np.float32)))
    return out


def evaluate(model, val_set):
    """Mean PSNR/SSIM of ``model`` on the validation crops, plus the outputs (for sample images)."""
    if not val_set:
        return None, []
    psnrs, ssims, outputs = [], [], []
    for _, blur, sharp in val_set:
        pred = model(blur[None], training=False)
        pred = np.clip(np.asarray(pred)[0], 0.0, 1.0)
        outputs.append(pred)
        psnrs.append(metrics.psnr(pred, sharp))
        ssims.append(metrics.ssim(pred, sharp))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}, outputs


@contextlib.contextmanager
def _stop_requests():
    """Ctrl-C (SIGINT) and SIGTERM (a scheduler's preemption) ask training to stop at the next step boundary, where
    the loop checkpoints and raises KeyboardInterrupt; a second signal raises it at once.

    Python runs a signal handler only between bytecodes of the main thread, so a signal that arrives during a
    TensorFlow call (a train step, the first step's tracing and graph optimisation) waits until that call returns
    (measured: 4.1 s for a 4.7 s op). Raising KeyboardInterrupt from the handler, as before, then lands wherever
    the main thread happens to be, possibly inside TensorFlow's own Python (tf.data, the function call machinery)
    right before the checkpoint save that needs it; setting a flag makes the stop land between steps, always."""
    state = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["signal"] is not None:
            raise KeyboardInterrupt(f"signal {signum} (again)")
        state["signal"] = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _progress(total, initial, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="train", smoothing=0.1)


def train(student, *, teacher=None, data, out, steps, batch=8, patch=128, seed=0, callbacks=(),
          weights=None, lr=DEFAULT_LR, lr_schedule="cosine", warmup=None, clipnorm=None,
          val_every=None, val_count=4, val_crop=256, ckpt_every=None, keep=3, log_every=10,
          strategy=None, arch=None, config=None, lineage=None, extra=None, export=True, progress=True,
          resume=True, augment=True, feature_pairs=None, data_spec=None, command=None, method=None,
          teacher_info=None, run_info=None, max_seconds=None, debug_nan_at_step=None, teacher_cache=None,
          parent=None, val_sharp=None, harm_floor=harm_validation.DEFAULT_FLOOR_DB, harm_count=12,
          precision="float32"):
    """Train ``student`` for ``steps`` optimizer steps and return the path of the best model (None on a
    non-chief worker of a multi-worker strategy).

    data: a DBlur root (``train/`` + ``test/``|``validation/``). out: the run folder (created).
    teacher: a frozen tf_keras model, or None to train the student alone (same losses minus teacher terms).
    weights: ``LossWeights`` (defaults: rec 1, ssim 0.2, freq 0.05, kd 0.5, feat 0).
    callbacks: extra Keras callbacks; they get ``on_train_begin``, ``on_train_batch_begin/end``,
      ``on_epoch_end`` (every ``val_every`` steps, after validation) and ``on_train_end``; their model is
      the Distiller (whose ``.student`` is the trained model), as under ``fit``.
    strategy: None/"default"/"mirrored"/"multiworker" or a tf.distribute.Strategy; the student (and the
      teacher) must have been built inside its scope for non-default strategies. ``batch`` is global.
    export: save the best weights to ``<out>/model.keras`` with ``kd_edge.models.save_model(arch=, config=,
      lineage=)`` and return that path; when False, restore the best weights into ``student`` and return the
      best checkpoint prefix (compression strips pruning wrappers before saving).
    max_seconds: a wall-clock training budget; when spent, training stops as if ``steps`` were reached
      (validation, checkpoint, export) and train.json says ``stopped: time budget``. Building a teacher cache
      counts against it.
    teacher_cache: a folder for offline distillation (:mod:`kd_edge.distill.teacher_cache`): the teacher runs
      once over the training images into it (or a matching cache there is reused), then training reads its
      outputs instead of running the teacher in every step. Needs ``teacher`` and ``teacher_info["sha256"]``;
      not with feature distillation or a multi-worker strategy.
    parent: the model this one was compressed from (or None): scored once on the same held-out crops, so
      ``train.json``'s ``best`` holds the model's PSNR/SSIM beside the parent's and the blurred input's.
    val_sharp: a folder of sharp photos (training-side, never a measuring set): every validation also scores
      PSNR(model(sharp), sharp) on ``harm_count`` centre crops of them, and the best step is the one with the
      highest ``held-out PSNR - max(0, harm_floor - that PSNR)`` (:mod:`kd_edge.distill.harm_validation`).
    precision: 'float32', or 'bfloat16' to train a mixed-bfloat16 copy of ``student``
      (:mod:`kd_edge.models.precision`; bf16 arithmetic, float32 weights, the output layer float32) whose weights
      are copied back into ``student`` at the end; validation runs that copy. Checkpoints hold the same float32
      variables either way, so a run may resume in the other precision. An online teacher runs in the same
      precision (a bf16 copy; a teacher cache is filled by the teacher as given).
    On return, ``student`` holds the best-by-validation weights.
    """
    out = Path(out)
    steps = int(steps)
    if steps < 1:
        raise KdEdgeError(f"--steps must be >= 1, got {steps}")
    val_every = int(val_every or max(1, min(500, steps // 4 or 1)))
    ckpt_every = int(ckpt_every or val_every)
    log_every = max(1, int(log_every))
    if isinstance(strategy, (str, type(None))):
        strategy = make_strategy(strategy or "default")
    replicas = strategy.num_replicas_in_sync
    if batch % replicas:
        raise KdEdgeError(f"--batch {batch} is not a multiple of the {replicas} replicas of the strategy")
    chief = is_chief(strategy)
    weights = weights or LossWeights()
    root = Path(data)
    train_dir = datasets.train_split(root)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "ckpt" if chief else out / f".worker-{strategy.cluster_resolver.task_id}" / "ckpt"
    best_dir = out / "best" if chief else ckpt_dir.parent / "best"

    from kd_edge.models.precision import with_precision

    t_budget = time.perf_counter()
    cache_info = None
    if teacher_cache is not None:
        if teacher is None:
            raise KdEdgeError("a teacher cache needs the teacher that fills it")
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise KdEdgeError("a teacher cache is not supported with --strategy multiworker (each worker would "
                              "build it); distil online or build it in a single-worker run first")
        from kd_edge.distill import teacher_cache as cache_module

        cache_info = cache_module.build(teacher, train_dir, teacher_cache,
                                        teacher_sha256=(teacher_info or {}).get("sha256"), progress=progress)
        online_teacher = None
    else:
        online_teacher = teacher
    if max_seconds is not None:
        max_seconds = max(0.0, max_seconds - (time.perf_counter() - t_budget))

    keras.utils.set_random_seed(int(seed))
    trained = student  # the float32 model the caller holds; `student` below is the copy that trains
    with strategy.scope():
        student = with_precision(trained, precision)
        if online_teacher is not None:  # the teacher computes in the run's precision too (output layer float32)
            online_teacher = with_precision(online_teacher, precision)
        distiller = Distiller(student, online_teacher, weights=weights, feature_pairs=feature_pairs,
                              cached_teacher=cache_info is not None)
        optimizer = make_optimizer(lr, schedule=lr_schedule, steps=steps, warmup=warmup, clipnorm=clipnorm)
        distiller.compile(optimizer=optimizer)
        optimizer.build(distiller.trainable_student_variables())
        best_psnr = tf.Variable(float("-inf"), dtype=tf.float32, trainable=False, name="best_psnr")
        best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step")
    checkpoint = tf.train.Checkpoint(student=student, optimizer=optimizer, adapters=distiller.adapters,
                                     best_psnr=best_psnr, best_step=best_step)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=int(keep))
    best_ckpt = tf.train.Checkpoint(student=student)
    best_manager = tf.train.CheckpointManager(best_ckpt, str(best_dir), max_to_keep=1, checkpoint_name="best")

    resumed_from = None
    if resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        resumed_from = manager.latest_checkpoint
        if lr_schedule == "constant":
            optimizer.learning_rate.assign(float(lr))  # the command line wins over the saved rate
    start = int(optimizer.iterations.numpy())
    if start >= steps and resumed_from:
        print(f"{out}: already trained to step {start} (>= --steps {steps}); exporting the best model")
    elif resumed_from and chief:
        print(f"{out}: resuming from step {start} of {steps} ({Path(resumed_from).name}; --force starts over)")

    # the data order after a resume is re-seeded from the step, so a resumed run is reproducible too
    data_seed = int(seed) + start
    from kd_edge.data.pipeline import train_dataset

    ds = train_dataset(train_dir, patch=int(patch), batch=int(batch), seed=data_seed, augment=augment, repeat=True,
                       teacher_dir=teacher_cache if cache_info is not None else None)
    if debug_nan_at_step is not None:  # hidden test hook: poison one batch to exercise the NaN guard
        poison_index = int(debug_nan_at_step) - start - 1

        def _poison(i, batch_):
            x, *rest = batch_
            return (tf.where(i == poison_index, x * np.float32("nan"), x), *rest)

        ds = ds.enumerate().map(_poison)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    iterator = iter(strategy.experimental_distribute_dataset(ds))

    stride = model_stride_of(student)
    if online_teacher is not None:
        stride = math.lcm(stride, model_stride_of(online_teacher))
    if int(patch) % stride:
        raise KdEdgeError(f"--patch {patch} is not a multiple of the model stride {stride} (student and teacher)")
    val_set = load_validation_set(root, count=val_count, crop=val_crop, stride=stride) if chief else []
    harm_crops = (harm_validation.load_sharp_crops(val_sharp, count=harm_count, crop=val_crop, stride=stride)
                  if chief and val_sharp and val_set else [])
    writer = tf.summary.create_file_writer(str(out / "tb")) if chief else tf.summary.create_noop_writer()

    seeds = {"seed": int(seed), "tf_keras_set_random_seed": int(seed), "data_seed": data_seed}
    info_path = out / "train.json"
    info = _load_info(info_path) if resumed_from else {}
    info.update({
        "format": "kd-edge-train/1",
        "run": dict(run_info or {}),
        "command": command,
        "teacher": _teacher_record(teacher, teacher_info, cache_info),
        "data": datasets.describe(root, data_spec or data),
        "steps": steps, "batch": int(batch), "patch": int(patch),
        "losses": weights.as_dict() if teacher is not None else weights.without_teacher().as_dict(),
        "optimizer": {"name": "adam", "lr": float(lr), "schedule": lr_schedule, "beta_1": 0.9, "beta_2": 0.99,
                      "clipnorm": clipnorm},
        "strategy": {"name": type(strategy).__name__, "replicas": replicas},
        "val": {"every": val_every, "count": len(val_set), "crop": val_crop, "stride": stride,
                "sharp": ({"dir": str(val_sharp), "crops": len(harm_crops), "floor_db": float(harm_floor),
                           "files": [name for name, _ in harm_crops]} if harm_crops else None)},
        "checkpoints": {"dir": str(ckpt_dir), "every": ckpt_every, "keep": int(keep)},
    })
    info.setdefault("seeds", [])
    info["seeds"].append(dict(seeds, start_step=start))
    info.setdefault("history", [])
    info.setdefault("segments", [])
    segment = {"start_step": start, "resumed_from": resumed_from, "status": "running", "precision": precision}
    info["segments"].append(segment)

    def save_info(status):
        segment["status"] = status
        if chief:
            write_json(info_path, info)

    last_saved = {"step": start if resumed_from else None}

    def save_checkpoint(step):
        if last_saved["step"] == step:
            return manager.latest_checkpoint
        if not _all_finite(checkpoint_variables):
            return None
        path = manager.save(checkpoint_number=step)
        last_saved["step"] = step
        return path

    checkpoint_variables = list(student.variables) + list(optimizer.variables)
    train_function = distiller.make_train_function()
    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=False, add_progbar=False,
                                                 model=distiller, verbose=0, epochs=1, steps=steps)
    save_info("running")
    bar = _progress(steps, start, progress and chief)
    step = start
    t0, timed_steps = time.perf_counter(), 0
    t_first = None
    logs = {}
    try:
        with _stop_requests() as stop:
            callback_list.on_train_begin()
            callback_list.on_epoch_begin(start // val_every)
            while step < steps:
                if stop["signal"] is not None:
                    raise KeyboardInterrupt(f"signal {stop['signal']}")
                callback_list.on_train_batch_begin(step)
                logs = train_function(iterator)
                step += 1
                timed_steps += 1
                if timed_steps == 1:
                    t_first = time.perf_counter()  # after tracing/compiling the step function
                loss = float(logs["loss"])
                if not math.isfinite(loss):
                    raise _NonFinite(loss)
                logs = {k: float(v) for k, v in logs.items()}
                callback_list.on_train_batch_end(step, logs)
                if step % log_every == 0 or step == steps:
                    rate = timed_steps / max(time.perf_counter() - t0, 1e-9)
                    with writer.as_default(step=step):
                        for k, v in logs.items():
                            summaries.scalar(f"train/{k}", v)
                        summaries.scalar("train/lr", _current_lr(optimizer))
                        summaries.scalar("train/steps_per_s", rate)
                    distiller.reset_metrics()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                last = step == steps or (max_seconds is not None and time.perf_counter() - t0 >= max_seconds)
                if step % val_every == 0 or last:
                    record = _validate(student, val_set, writer, step, logs, harm_crops, harm_floor)
                    if record is not None:
                        info["history"].append(record)
                        # best_psnr holds the selection score: the PSNR itself without --val-sharp
                        if record["score"] > float(best_psnr.numpy()) and _all_finite(student.variables):
                            best_psnr.assign(record["score"])
                            best_step.assign(step)
                            best_manager.save(checkpoint_number=step)
                        if bar is not None:
                            harm = (f"  sharp kept {record['harm_psnr']:.2f} dB" if "harm_psnr" in record else "")
                            bar.write(f"step {step}: val PSNR {record['psnr']:.2f} dB  SSIM {record['ssim']:.4f}"
                                      f"{harm}  (best score {float(best_psnr.numpy()):.2f} at step "
                                      f"{int(best_step.numpy())})")
                    callback_list.on_epoch_end(step // val_every - 1, logs)
                    if step < steps:
                        callback_list.on_epoch_begin(step // val_every)
                if step % ckpt_every == 0 or last:
                    save_checkpoint(step)
                    segment["end_step"] = step
                    save_info("running")
                if last and step < steps:
                    segment["stopped"] = "time budget"
                    break
            callback_list.on_train_end(logs)
    except _NonFinite as exc:
        if bar is not None:
            bar.close()
        segment["end_step"] = step
        good = manager.latest_checkpoint
        save_info("non-finite loss")
        where = (f"the last good checkpoint is {good} (rerun the same command to resume from it, "
                 f"e.g. with a lower --lr)" if good else "no checkpoint was saved before it")
        raise KdEdgeError(f"loss became {exc.value} at step {step}: training stopped, "
                          f"the bad weights were not saved; {where}") from None
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        done = int(optimizer.iterations.numpy())
        path = save_checkpoint(done)
        segment["end_step"] = done
        save_info("interrupted")
        if chief:
            where = f"saved {path}" if path else "the weights were not finite, nothing saved"
            print(f"interrupted at step {done}: {where}; rerun the same command to resume")
        raise
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    segment["steps_per_s"] = timed_steps / elapsed if timed_steps and elapsed > 0 else None
    segment["seconds"] = elapsed
    if t_first is not None and timed_steps > 1:
        segment["steps_per_s_steady"] = (timed_steps - 1) / max(time.perf_counter() - t_first, 1e-9)

    # the best-by-validation weights (final weights when there is no held-out split)
    if best_manager.latest_checkpoint:
        best_ckpt.restore(best_manager.latest_checkpoint).assert_existing_objects_matched()
    if student is not trained:
        trained.set_weights(student.get_weights())
        student = trained
    info["best"] = (dict(_best_record(info["history"], int(best_step.numpy()), float(best_psnr.numpy())),
                         crops=len(val_set), **_reference_scores(val_set, parent, teacher)) if val_set else None)
    result = Path(best_manager.latest_checkpoint or manager.latest_checkpoint or out)
    if export and chief:
        from kd_edge.models import save_model

        step_record = {
            "method": method or ("distill" if teacher is not None else "train"),
            "teacher": info["teacher"],
            "data": info["data"],
            "steps": step,
            "best_step": info["best"]["step"] if info["best"] else step,
            "seeds": info["seeds"],
            "losses": info["losses"],
            "optimizer": info["optimizer"],
            "precision": sorted({seg.get("precision", "float32") for seg in info["segments"]}),
        }
        if isinstance(lineage, dict):
            step_record.update(lineage)
            full_lineage = [step_record]
        else:
            full_lineage = list(lineage or []) + [step_record]
        result = out / "model.keras"
        save_model(student, result, arch=arch, config=config, lineage=full_lineage,
                   extra=dict(extra or {}, validation=info["best"]))
        info["model"] = str(result)
    save_info("done")
    if not chief:  # a non-chief worker's checkpoints were only there for the collective save protocol
        import shutil

        shutil.rmtree(ckpt_dir.parent, ignore_errors=True)
        return None
    return result


class _NonFinite(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


def _current_lr(optimizer):
    rate = optimizer.learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(optimizer.iterations)
    return float(tf.convert_to_tensor(rate).numpy())  # also for distributed (Mirrored) variables


def _reference_scores(val_set, parent, teacher=None):
    """Mean PSNR/SSIM of the blurred input itself (and of ``parent`` and ``teacher``) on the held-out crops: the
    figures a model's held-out score must be read against."""
    scores = {"blurred_psnr": float(np.mean([metrics.psnr(blur, sharp) for _, blur, sharp in val_set])),
              "blurred_ssim": float(np.mean([metrics.ssim(blur, sharp) for _, blur, sharp in val_set]))}
    if parent is not None:
        parent_scores, _ = evaluate(parent, val_set)
        scores.update(parent_psnr=parent_scores["psnr"], parent_ssim=parent_scores["ssim"])
    if teacher is not None:
        teacher_scores, _ = evaluate(teacher, val_set)
        scores.update(teacher_psnr=teacher_scores["psnr"], teacher_ssim=teacher_scores["ssim"])
    return scores


def _best_record(history, step, score):
    """train.json's best step: its held-out PSNR (and do-no-harm PSNR, score) from the history."""
    record = next((r for r in reversed(history) if r.get("step") == step), None)
    if record is None:  # a run resumed from checkpoints older than the history: the score is all there is
        return {"step": step, "psnr": score}
    best = {"step": step, "psnr": record["psnr"]}
    if "harm_psnr" in record:
        best.update(harm_psnr=record["harm_psnr"], harm_min=record["harm_min"], score=record["score"])
    return best


def _validate(student, val_set, writer, step, logs, harm_crops=(), harm_floor=harm_validation.DEFAULT_FLOOR_DB):
    scores, outputs = evaluate(student, val_set)
    if scores is None:
        return None
    harm = harm_validation.harm_psnr(student, harm_crops)
    record = {"step": step, "psnr": scores["psnr"], "ssim": scores["ssim"], "loss": logs.get("loss"),
              "score": harm_validation.selection_score(scores["psnr"], harm and harm["mean"], harm_floor)}
    if harm is not None:
        record.update(harm_psnr=harm["mean"], harm_min=harm["min"])
    with writer.as_default(step=step):
        summaries.scalar("val/psnr", scores["psnr"])
        summaries.scalar("val/ssim", scores["ssim"])
        if harm is not None:
            summaries.scalar("val/sharp_kept_psnr", harm["mean"])
            summaries.scalar("val/score", record["score"])
        samples = []
        for (_, blur, sharp), pred in list(zip(val_set, outputs))[:3]:
            samples.append(np.concatenate([blur, pred, sharp], axis=1))  # blurred | output | sharp
        if samples:
            h = min(s.shape[0] for s in samples)
            w = min(s.shape[1] for s in samples)
            summaries.images("val/blur_output_sharp", np.stack([s[:h, :w] for s in samples]), max_outputs=3)
    writer.flush()
    return record


def _teacher_record(teacher, teacher_info, cache_info):
    """train.json's "teacher": what the caller says of it (path, sha256...), plus the cache when offline."""
    if teacher is None:
        return None
    record = dict(teacher_info or {"name": teacher.name})
    if cache_info is not None:
        record["cache"] = cache_info
    return record


def _load_info(path):
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
