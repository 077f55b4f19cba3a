"""TensorBoard scalars and images written with TensorFlow alone (the ``tensorboard`` package is not needed).

The event files use TensorBoard's own plugin metadata ("scalars", "images"), so ``tensorboard --logdir
<out>/tb`` (installed wherever you view them) shows them as usual.
"""
import numpy as np

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin, content=b""):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin, content=content))


def scalar(name, value, step=None):
    """Like tf.summary.scalar (within ``writer.as_default()``)."""
    return tf.summary.write(name, tf.cast(value, tf.float32), step=step, metadata=_metadata("scalars"))


def images(name, batch, step=None, max_outputs=3):
    """Like tf.summary.image: ``batch`` is float NxHxWx3 in [0, 1]; stored as PNG strings."""
    batch = np.clip(np.asarray(batch, dtype=np.float32)[:max_outputs], 0.0, 1.0)
    if batch.size == 0:
        return False
    h, w = batch.shape[1:3]
    encoded = [tf.io.encode_png(tf.convert_to_tensor((img * 255.0 + 0.5).astype(np.uint8))) for img in batch]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h))] + encoded)
    return tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))
