"""A user's own Keras layers and the Lambda opt-in, shared by every command that loads a model.

``--custom-objects MODULE:NAME`` (repeatable) imports ``MODULE`` (a dotted module name importable from the
current folder or ``sys.path``, or a path to a ``.py`` file) and registers its attribute ``NAME`` (a layer,
loss, activation... class or function) in tf_keras' global custom objects, so that loading a model file,
rebuilding it from its config (size changes, pruning, QAT) and cloning it all find the class.

``--unsafe-lambda`` lets ``Lambda`` layers load (``safe_mode=False``): their Python code is stored in the model
file and runs when it is loaded, so this is off by default and warned about each time it is used.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

from kd_edge.errors import KdEdgeError

_state = {"specs": [], "unsafe_lambda": False}


def _import(module_text):
    if module_text.endswith(".py") or "/" in module_text or "\\" in module_text:
        path = Path(module_text)
        if not path.is_file():
            raise KdEdgeError(f"{module_text}: no such Python file")
        name = f"kd_edge_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    return importlib.import_module(module_text)


def register(spec: str):
    """Register ``MODULE:NAME`` for deserialisation; returns the registered object. KdEdgeError naming the spec."""
    module_text, sep, name = str(spec).rpartition(":")
    if not sep or not module_text or not name or not name.isidentifier():
        raise KdEdgeError(f"{spec}: expected MODULE:NAME (e.g. my_layers:MyGate or "
                          f"path/to/my_layers.py:MyGate)")
    import kd_edge  # noqa: F401  (tf_keras before the user's module imports TensorFlow)

    try:
        module = _import(module_text)
    except KdEdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module: one line naming it
        raise KdEdgeError(f"{spec}: cannot import {module_text} "
                          f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") \
            from exc
    obj = getattr(module, name, None)
    if obj is None:
        raise KdEdgeError(f"{spec}: {module_text} has no attribute {name!r}")
    import tf_keras

    registry = tf_keras.utils.get_custom_objects()
    registry[name] = obj
    registered = tf_keras.utils.get_registered_name(obj)
    if registered and registered != name:
        registry[registered] = obj
    if spec not in _state["specs"]:
        _state["specs"].append(spec)
    return obj


def registered_specs():
    """The ``MODULE:NAME`` specs registered in this process (a child process re-registers them)."""
    return list(_state["specs"])


def allow_unsafe_lambda(allow=True):
    _state["unsafe_lambda"] = bool(allow)


def unsafe_lambda_allowed() -> bool:
    return _state["unsafe_lambda"]
