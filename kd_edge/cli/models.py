"""``kd-edge models``: list the model zoo with parameters, GMACs at 256x256, stride and description."""
import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def describe(names=None, *, size=256):
    """Build each architecture and return one row (dict) per model: name, family, params, macs, stride..."""
    from kd_edge.models import architectures, build, count_macs, count_params, model_stride
    from kd_edge.models.complexity import feature_layer_names

    import tf_keras

    specs = architectures()
    rows = []
    for name in names or list(specs):
        if name not in specs:
            from kd_edge.errors import KdEdgeError

            raise KdEdgeError(f"unknown architecture {name!r}; choose one of: {', '.join(specs)}")
        spec = specs[name]
        model = build(name)
        macs = count_macs(model, size, size)
        rows.append({
            "name": name,
            "family": spec["family"],
            "params": count_params(model),
            "macs": macs,
            "gmacs": round(macs / 1e9, 3),
            "input_size": [size, size],
            "stride": model_stride(model),
            "layers": len(model.layers),
            "feature_layers": feature_layer_names(model),
            "description": spec["description"],
            "defaults": spec["defaults"],
        })
        del model
        tf_keras.backend.clear_session()
    return rows


def _params(n):
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1)
@click.option("--json", "json_out", metavar="FILE", help="Also write the table as JSON to FILE ('-' = stdout only).")
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096),
              help="Square input size at which MACs are counted.")
def models(names, json_out, size):
    """List every architecture (or only NAMES) with params, GMACs at SIZExSIZE, stride and description.

    MACs are multiply-accumulates of the convolution/dense layers, counted analytically from shapes. Any
    input whose height and width are multiples of the stride works (fully convolutional).
    """
    from kd_edge.models import architectures
    from kd_edge.models.registry import check_input_size

    for name in names:
        if name not in architectures():
            raise click.BadParameter(f"unknown architecture {name!r}; choose from {', '.join(architectures())}",
                                     param_hint="NAMES")
    for spec in architectures().values():
        if not names or spec["name"] in names:
            check_input_size(size, size, spec["stride"], what=f"--size for {spec['name']}")
    rows = describe(list(names) or None, size=size)
    if json_out == "-":
        import json

        click.echo(json.dumps({"input_size": [size, size], "models": rows}, indent=2))
        return
    header = f"{'name':<14}{'params':>9}{'GMACs@' + str(size):>12}{'stride':>8}  description"
    click.echo(header)
    click.echo("-" * len(header))
    for row in rows:
        click.echo(f"{row['name']:<14}{_params(row['params']):>9}{row['gmacs']:>12.3f}{row['stride']:>8}  "
                   f"{row['description']}")
    if json_out:
        from kd_edge.atomic import write_json

        write_json(json_out, {"input_size": [size, size], "models": rows})
        click.echo(f"wrote {json_out}")
