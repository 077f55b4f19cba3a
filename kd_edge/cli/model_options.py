"""``--custom-objects MODULE:NAME`` and ``--unsafe-lambda``: the same two options on every command that loads a
Keras model (convert, bench, deblur, eval, prune, quantize, train-teacher, distill). They act when parsed:
later loads (:func:`kd_edge.models.load_model`) see the registered classes and the Lambda opt-in."""
import click


def _register(ctx, param, values):
    from kd_edge.errors import KdEdgeError
    from kd_edge.models.user_objects import register

    for spec in values or ():
        try:
            register(spec)
        except KdEdgeError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return values


def _unsafe(ctx, param, value):
    from kd_edge.models.user_objects import allow_unsafe_lambda

    allow_unsafe_lambda(bool(value))
    return value


def model_loading_options(fn):
    fn = click.option("--unsafe-lambda", is_flag=True, expose_value=False, callback=_unsafe,
                      help="Load Lambda layers (Keras safe_mode=False): their Python code, stored in the model "
                           "file, runs. Only for files you trust; a warning names the layers.")(fn)
    fn = click.option("--custom-objects", "custom_objects", multiple=True, metavar="MODULE:NAME",
                      expose_value=False, callback=_register,
                      help="Register your own layer (or other Keras object) before loading: NAME from MODULE (a "
                           "module importable from here, or a path/to/file.py). Repeatable.")(fn)
    return fn
