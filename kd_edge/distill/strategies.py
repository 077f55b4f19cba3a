"""tf.distribute strategies by name: ``default``, ``mirrored`` (all local GPUs, or logical CPUs), ``multiworker``."""
import json
import os

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf

from kd_edge.errors import KdEdgeError

STRATEGIES = ("default", "mirrored", "multiworker")


def split_cpu(replicas):
    """Split the host CPU into ``replicas`` logical devices (for mirrored training without GPUs).

    Must run before TensorFlow initialises its devices; a no-op for replicas <= 1.
    """
    if not replicas or int(replicas) <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(int(replicas))])
    except RuntimeError as exc:
        raise KdEdgeError(f"cannot split the CPU into {replicas} devices after TensorFlow started: {exc}") from exc


def make_strategy(name="default"):
    if name in (None, "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multiworker":
        if "TF_CONFIG" in os.environ:
            try:
                json.loads(os.environ["TF_CONFIG"])
            except ValueError as exc:
                raise KdEdgeError(f"TF_CONFIG is not valid JSON: {exc}") from exc
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise KdEdgeError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    if task_type == "worker":
        return task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    return task_type is None
