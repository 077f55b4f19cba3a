"""The Distiller: a tf_keras Model that trains a student, optionally against a frozen teacher.

    distiller = Distiller(student, teacher, weights=LossWeights(kd=0.5, feat=0.1))
    distiller.compile(optimizer=tf_keras.optimizers.Adam(1e-3))
    distiller.fit(dataset_of_blur_sharp_pairs, ...)          # or kd_edge.distill.trainer.train(...)

Loss (each term weighted, see ``LossWeights``):
    rec  * Charbonnier|L1(student, sharp)
  + ssim * (1 - SSIM(student, sharp))
  + freq * L1(|FFT(student)|, |FFT(sharp)|)
  + kd   * Charbonnier|L1(student, teacher)                   (teacher only)
  + feat * L1(adapter_i(student_feature_i), teacher_feature_i) (teacher only; 1x1 conv adapters)
  + the student's own regularisation losses.

``teacher=None`` trains the student alone with the same losses minus the teacher terms, unless
``cached_teacher=True``: then each batch is ``(blur, sharp, teacher output)`` from a teacher-output cache
(:mod:`kd_edge.distill.teacher_cache`) and ``kd`` is kept (``feat`` needs a live teacher). The teacher is frozen
(``trainable=False``, called with ``training=False``); only the student and the adapters get gradients.
Works under any tf.distribute strategy (build it inside ``strategy.scope()``) and with tfmot-wrapped students.
"""
import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from kd_edge.distill import losses
from kd_edge.distill.losses import LossWeights
from kd_edge.errors import KdEdgeError

TERMS = ("rec", "ssim", "freq", "kd", "feat")


def _model_output(model):
    outputs = model.outputs
    if not outputs:
        raise KdEdgeError(f"model {model.name!r} has no symbolic outputs; feature distillation needs a functional model")
    return outputs[0]


def _layer_output(model, name):
    try:
        layer = model.get_layer(name)
    except ValueError as exc:
        raise KdEdgeError(f"model {model.name!r} has no layer {name!r} for feature distillation") from exc
    out = layer.output
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out


def default_feature_names(model):
    """kd_edge.models.feature_layer_names(model) (the zoo's intermediate features)."""
    from kd_edge.models import feature_layer_names

    return list(feature_layer_names(model))


def pair_features(student_names, teacher_names):
    """Pair the student's and the teacher's feature layers: as many pairs as the shorter list, spread evenly."""
    student_names, teacher_names = list(student_names), list(teacher_names)
    k = min(len(student_names), len(teacher_names))
    if k == 0:
        return []

    def pick(names):
        if len(names) == k:
            return names
        if k == 1:
            return [names[len(names) // 2]]
        return [names[round(i * (len(names) - 1) / (k - 1))] for i in range(k)]

    return list(zip(pick(student_names), pick(teacher_names)))


class Distiller(keras.Model):
    """Frozen teacher, trainable student, the losses above. ``call`` runs the student."""

    def __init__(self, student, teacher=None, *, weights=None, feature_pairs=None, cached_teacher=False,
                 name="distiller", **weight_kwargs):
        super().__init__(name=name)
        if weights is None:
            weights = LossWeights(**weight_kwargs)
        elif weight_kwargs:
            raise TypeError("pass either weights=LossWeights(...) or keyword weights, not both")
        if cached_teacher:
            if teacher is not None:
                raise KdEdgeError("cached teacher outputs replace the teacher: pass teacher=None")
            if weights.feat > 0:
                raise KdEdgeError("feature distillation (--w-feat > 0) needs the teacher's activations: "
                                  "it cannot use cached teacher outputs")
        elif teacher is None:
            weights = weights.without_teacher()
        self.cached_teacher = bool(cached_teacher)
        self.student = student
        self.teacher = teacher
        self.loss_config = weights
        if teacher is not None:
            teacher.trainable = False
        self.feature_pairs = []
        self.adapters = []
        self._student_features = None
        self._teacher_features = None
        if teacher is not None and weights.feat > 0:
            self._build_feature_distillation(feature_pairs)
        self.trackers = {t: keras.metrics.Mean(name=t) for t in ("loss",) + TERMS}

    # -- feature distillation -------------------------------------------------------------------
    def _build_feature_distillation(self, feature_pairs):
        if feature_pairs is None:
            feature_pairs = pair_features(default_feature_names(self.student), default_feature_names(self.teacher))
        if not feature_pairs:
            raise KdEdgeError("feature distillation (--w-feat > 0) found no feature layers to pair")
        self.feature_pairs = [tuple(p) for p in feature_pairs]
        s_outs = [_layer_output(self.student, s) for s, _ in self.feature_pairs]
        t_outs = [_layer_output(self.teacher, t) for _, t in self.feature_pairs]
        self._student_features = keras.Model(self.student.inputs, [_model_output(self.student)] + s_outs,
                                             name="student_features")
        self._teacher_features = keras.Model(self.teacher.inputs, [_model_output(self.teacher)] + t_outs,
                                             name="teacher_features")
        self._teacher_features.trainable = False
        for i, (s, t) in enumerate(zip(s_outs, t_outs)):
            s_ch, t_ch = s.shape[-1], t.shape[-1]
            if s_ch is None or t_ch is None:
                raise KdEdgeError(f"feature pair {self.feature_pairs[i]} has an unknown channel count")
            adapter = keras.layers.Conv2D(int(t_ch), 1, name=f"adapter_{i}")
            adapter.build((None, None, None, int(s_ch)))
            self.adapters.append(adapter)

    # -- forward ----------------------------------------------------------------------------------
    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def trainable_student_variables(self):
        variables = list(self.student.trainable_variables)
        for adapter in self.adapters:
            variables += adapter.trainable_variables
        return variables

    def _teacher_forward(self, x):
        if self.teacher is None:
            return None, []
        if self._teacher_features is not None:
            out, *feats = self._teacher_features(x, training=False)
            # float32 whatever the teacher computes in (a bfloat16 teacher's features meet float32 adapters)
            return tf.stop_gradient(out), [tf.stop_gradient(tf.cast(f, tf.float32)) for f in feats]
        return tf.stop_gradient(self.teacher(x, training=False)), []

    def _student_forward(self, x, training):
        if self._student_features is not None:
            out, *feats = self._student_features(x, training=training)
            return out, feats
        return self.student(x, training=training), []

    def compute_terms(self, y, s_out, t_out=None, s_feats=(), t_feats=()):
        """Weighted loss terms (a dict of scalars, unweighted values) and the weighted total."""
        w = self.loss_config
        zero = tf.constant(0.0)
        terms = {
            "rec": losses.reconstruction(y, s_out, w.rec_type, w.charbonnier_eps) if w.rec > 0 else zero,
            "ssim": losses.ssim_loss(y, s_out) if w.ssim > 0 else zero,
            "freq": losses.frequency_loss(y, s_out) if w.freq > 0 else zero,
            "kd": zero,
            "feat": zero,
        }
        if t_out is not None and w.kd > 0:
            terms["kd"] = losses.reconstruction(t_out, s_out, w.rec_type, w.charbonnier_eps)
        if t_feats and w.feat > 0:
            adapted = [adapter(f) for adapter, f in zip(self.adapters, s_feats)]
            terms["feat"] = losses.feature_loss(adapted, t_feats)
        total = tf.add_n([getattr(w, name) * terms[name] for name in TERMS])
        return total, terms

    def _update_trackers(self, total, terms):
        self.trackers["loss"].update_state(total)
        for name in TERMS:
            self.trackers[name].update_state(terms[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _unpack(self, data):
        """(x, y, teacher output, teacher features) of a batch: (blur, sharp) or, cached, (blur, sharp, teacher)."""
        if self.cached_teacher:
            x, y, t_out = data
            return x, y, t_out, []
        x, y = data
        return (x, y, *self._teacher_forward(x))

    def train_step(self, data):
        x, y, t_out, t_feats = self._unpack(data)
        with tf.GradientTape() as tape:
            s_out, s_feats = self._student_forward(x, training=True)
            total, terms = self.compute_terms(y, s_out, t_out, s_feats, t_feats)
            if self.student.losses:
                total = total + tf.add_n([tf.cast(l, tf.float32) for l in self.student.losses])
            # each replica holds a shard of the global batch; the optimizer sums replica gradients
            scaled = total / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        variables = self.trainable_student_variables()
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._update_trackers(total, terms)

    def test_step(self, data):
        x, y, t_out, t_feats = self._unpack(data)
        s_out, s_feats = self._student_forward(x, training=False)
        total, terms = self.compute_terms(y, s_out, t_out, s_feats, t_feats)
        return self._update_trackers(total, terms)

    def get_config(self):  # the Distiller itself is never saved; the student is (kd_edge.models.save_model)
        return {"name": self.name, "weights": self.loss_config.as_dict(), "feature_pairs": self.feature_pairs}
