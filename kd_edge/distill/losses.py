"""Training losses for deblurring and knowledge distillation. None of them needs pretrained weights.

Every loss takes NHWC float tensors in [0, 1] and returns a scalar: the mean over the batch (each replica
of a tf.distribute strategy computes it on its own shard; the Distiller scales it for the all-reduce).

- ``charbonnier``: sqrt((x - y)^2 + eps^2), a smooth L1 (the reconstruction default).
- ``l1``: mean absolute error.
- ``ssim_loss``: 1 - SSIM (tf.image.ssim, 11x11 Gaussian window shrunk for tiny patches).
- ``frequency_loss``: L1 between FFT amplitude spectra (tf.signal.fft2d on channels-first), orthonormal
  scaling so its size does not depend on the patch size. Penalises lost high-frequency texture.
- ``feature_loss``: L1 between (adapted) student features and teacher features, resized if needed.
"""
from dataclasses import asdict, dataclass

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf

RECONSTRUCTION_LOSSES = ("charbonnier", "l1")


@dataclass
class LossWeights:
    """Weights of every loss term. Defaults are the CLI defaults (documented in ``kd-edge distill -h``)."""

    rec: float = 1.0        # reconstruction (student vs sharp)
    ssim: float = 0.2       # 1 - SSIM (student vs sharp)
    freq: float = 0.05      # FFT amplitude L1 (student vs sharp)
    kd: float = 0.5         # output distillation (student vs teacher output), Charbonnier/L1 as ``rec_type``
    feat: float = 0.0       # feature distillation through 1x1 adapters (0 = off)
    rec_type: str = "charbonnier"
    charbonnier_eps: float = 1e-3

    def __post_init__(self):
        if self.rec_type not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"unknown reconstruction loss {self.rec_type!r}; expected one of {RECONSTRUCTION_LOSSES}")
        for name in ("rec", "ssim", "freq", "kd", "feat"):
            value = float(getattr(self, name))
            if not value >= 0.0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value}")
            setattr(self, name, value)

    def as_dict(self):
        return asdict(self)

    def without_teacher(self):
        """The same weights with the teacher terms removed (the --no-teacher ablation)."""
        return LossWeights(rec=self.rec, ssim=self.ssim, freq=self.freq, kd=0.0, feat=0.0,
                           rec_type=self.rec_type, charbonnier_eps=self.charbonnier_eps)


def _f32(x):
    return tf.cast(x, tf.float32)


def charbonnier(y_true, y_pred, eps=1e-3):
    diff = _f32(y_pred) - _f32(y_true)
    return tf.reduce_mean(tf.sqrt(tf.square(diff) + eps * eps))


def l1(y_true, y_pred):
    return tf.reduce_mean(tf.abs(_f32(y_pred) - _f32(y_true)))


def reconstruction(y_true, y_pred, kind="charbonnier", eps=1e-3):
    if kind == "charbonnier":
        return charbonnier(y_true, y_pred, eps)
    if kind == "l1":
        return l1(y_true, y_pred)
    raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {RECONSTRUCTION_LOSSES}")


def ssim_loss(y_true, y_pred, filter_size=11):
    """1 - mean SSIM. The window shrinks to fit patches smaller than 11 px (static shapes only)."""
    y_true, y_pred = _f32(y_true), _f32(y_pred)
    h, w = y_pred.shape[1], y_pred.shape[2]
    if h is not None and w is not None:
        filter_size = max(1, min(filter_size, int(h), int(w)))
    # SSIM is undefined outside [0, 1]; the student may overshoot early in training.
    y_pred = tf.clip_by_value(y_pred, 0.0, 1.0)
    value = tf.image.ssim(y_true, y_pred, max_val=1.0, filter_size=filter_size)
    return 1.0 - tf.reduce_mean(value)


def amplitude_spectrum(x):
    """|FFT2(x)| per channel, orthonormal scaling (divided by sqrt(H*W)). x: NHWC -> NCHW amplitudes."""
    x = tf.transpose(_f32(x), [0, 3, 1, 2])
    spectrum = tf.signal.fft2d(tf.complex(x, tf.zeros_like(x)))
    size = tf.cast(tf.shape(x)[2] * tf.shape(x)[3], tf.float32)
    return tf.abs(spectrum) / tf.sqrt(size)


def frequency_loss(y_true, y_pred):
    return tf.reduce_mean(tf.abs(amplitude_spectrum(y_pred) - amplitude_spectrum(y_true)))


def match_spatial(x, like):
    """Resize ``x`` (NHWC) to the spatial size of ``like`` when they differ (bilinear; training only)."""
    if x.shape[1] is not None and like.shape[1] is not None and x.shape[1:3] == like.shape[1:3]:
        return x
    return tf.image.resize(x, tf.shape(like)[1:3], method="bilinear")


def feature_loss(student_features, teacher_features):
    """Mean L1 over pairs of already-adapted student features and teacher features."""
    terms = []
    for s, t in zip(student_features, teacher_features):
        s = match_spatial(_f32(s), t)
        terms.append(tf.reduce_mean(tf.abs(s - tf.stop_gradient(_f32(t)))))
    if not terms:
        return tf.constant(0.0)
    return tf.add_n(terms) / float(len(terms))
