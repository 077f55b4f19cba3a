"""`kd-edge bench`: latency and memory of converted artifacts here, on a board over ssh, or on a phone over adb.

    kd-edge bench ARTIFACT... [--runs 100 --warmup 10 --threads 1,2,4 --size 256]
                  [--device local | ssh:USER@HOST[:PORT] | adb[:SERIAL]] [--json OUT.json] [--report OUT.md] [--plots DIR]
    kd-edge bench --peak            measure this host's practical fp32/int8 throughput (roofline), cached
    kd-edge bench compare A.json B.json
"""
import shlex
from pathlib import Path

import click

from kd_edge.cli.model_options import model_loading_options
from kd_edge.errors import InputFileError, KdEdgeError

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _int_list(text, what):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"{what} must be positive integers, got {text!r}")
    return values


def _default_artifacts():
    """The embedded default student (issue 9), or None when this install has none."""
    from kd_edge.defaults import default_model_path

    try:
        return [str(default_model_path("student"))]
    except KdEdgeError:
        return None


@click.command("compare", context_settings=CTX)
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
def compare(a, b):
    """Print B/A ratios of p50 latency and peak RSS for results present in both bench JSON files."""
    from kd_edge.benchmarks import report
    from kd_edge.benchmarks.schema import read_results

    doc_a, doc_b = read_results(a), read_results(b)
    rows = report.compare(doc_a, doc_b)
    click.echo(report.compare_text(rows, doc_a, doc_b, a, b), nl=False)
    if not rows:
        raise KdEdgeError(f"{b}: no result matches one in {a} (same artifact, threads and size)")


def _command_line(ctx, artifacts):
    """The command as given (options that differ from their defaults), stored in the JSON to re-run it."""
    parts = list(artifacts)
    for param in ctx.command.params:
        if not isinstance(param, click.Option):
            continue
        value = ctx.params.get(param.name)
        if value in (None, False, ()) or value == param.default:
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            parts.append(flag)
        elif param.multiple:
            for v in value:
                parts += [flag, str(v)]
        else:
            parts += [flag, str(value)]
    return "kd-edge bench " + shlex.join(parts)


class _BenchCommand(click.Command):
    """`kd-edge bench compare A B` dispatches to the compare command; anything else is a benchmark run."""

    def parse_args(self, ctx, args):
        if args and args[0] == "compare":
            ctx.meta["kd_edge.bench.compare"] = compare.make_context("kd-edge bench compare", list(args[1:]))
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        sub = ctx.meta.get("kd_edge.bench.compare")
        if sub is not None:
            with sub:
                return compare.invoke(sub)
        return super().invoke(ctx)


@click.command("bench", cls=_BenchCommand, context_settings=CTX,
               epilog="Compare two runs: kd-edge bench compare A.json B.json")
@click.argument("artifacts", nargs=-1, type=click.Path())
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed runs after warm-up.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed warm-up runs.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Interleaved fresh-process repeats of every configuration; keeps the median (local/ssh).")
@click.option("--threads", default="1,2,4", show_default=True, help="Comma-separated thread counts.")
@click.option("--size", "sizes", default="256", show_default=True, help="Input size(s) in pixels, comma-separated.")
@click.option("--device", default="local", show_default=True,
              help="local | ssh:USER@HOST[:PORT] | adb[:SERIAL]")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the results (bench schema v1).")
@click.option("--report", "report_out", type=click.Path(dir_okay=False), help="Write a Markdown report.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), help="Write PNG plots into this folder.")
@click.option("--peak", is_flag=True, help="Measure this host's practical fp32/int8 peak (roofline) and cache it.")
@click.option("--note", "notes", multiple=True, help="A note stored in the JSON (e.g. which checkpoint).")
@click.option("--remote-python", default="python3", show_default=True, help="ssh: python on the board.")
@click.option("--identity", type=click.Path(dir_okay=False), help="ssh: private key file.")
@click.option("--ssh-option", "ssh_options", multiple=True, help="ssh: extra -o option (repeatable).")
@click.option("--adb", "adb_path", help="adb: the adb executable (default: adb on PATH).")
@click.option("--benchmark-model", type=click.Path(dir_okay=False),
              help="adb: LiteRT benchmark_model binary built for the phone.")
@click.option("--cpu-mask", help="adb: taskset CPU mask in hex (e.g. f0 = big cores of a 4+4 SoC).")
@click.option("--no-xnnpack", is_flag=True, help="LiteRT without XNNPACK (local/ssh/adb).")
@click.option("--use-gpu", is_flag=True, help="adb: LiteRT GPU delegate.")
@click.option("--fp16", is_flag=True, help="adb: allow fp16 in the GPU delegate (gpu_precision_loss_allowed).")
@model_loading_options
def bench(artifacts, runs, warmup, repeats, threads, sizes, device, json_out, report_out, plots_dir, peak, notes,
          remote_python, identity, ssh_options, adb_path, benchmark_model, cpu_mask, no_xnnpack, use_gpu, fp16):
    """Benchmark ARTIFACT... (.tflite, .onnx, .keras, .mlpackage, or folders of them): init, first inference,
    latency statistics, MPix/s, peak RSS and its delta over the bare runtime, size, GFLOP/s and the ratio to the
    P100 reference. Each (artifact, threads, size) runs in a fresh process."""
    from kd_edge.atomic import write_json, write_text
    from kd_edge.benchmarks import peak as peak_mod

    thread_list = _int_list(threads, "--threads")
    size_list = _int_list(sizes, "--size")
    command = _command_line(click.get_current_context(), artifacts)
    peak_block = None
    if peak:
        if device != "local":
            raise KdEdgeError("--peak measures this host; run `kd-edge bench --peak` on the board itself")
        peak_block = peak_mod.measure_peak(thread_list if threads != "1,2,4" else None, echo=click.echo)
        click.echo(f"peak cached in {peak_mod.cache_path()}")
        if not artifacts:
            return
    if not artifacts:
        artifacts = _default_artifacts()
        if not artifacts:
            raise click.UsageError("give at least one ARTIFACT (or --peak); this install has no embedded default student")
    for a in artifacts:
        if not Path(a).exists():
            raise InputFileError(a, "no such file")
    if device == "adb" or device.startswith("adb:"):
        from kd_edge.android_harness.adb import bench_adb

        if len(size_list) != 1:
            raise click.BadParameter("--device adb takes one --size")
        doc = bench_adb(artifacts, benchmark_model=benchmark_model, serial=device[4:] or None, adb=adb_path,
                        threads=thread_list, size=size_list[0], runs=runs, warmup=warmup, use_xnnpack=not no_xnnpack,
                        use_gpu=use_gpu, fp16=fp16, cpu_mask=cpu_mask, command=command, notes=notes, echo=click.echo)
    else:
        if use_gpu or fp16 or cpu_mask or benchmark_model:
            raise click.BadParameter("--use-gpu, --fp16, --cpu-mask and --benchmark-model apply to --device adb")
        from kd_edge.benchmarks.harness import bench as run_bench

        doc = run_bench(artifacts, threads=thread_list, sizes=size_list, runs=runs, warmup=warmup, device=device,
                        peak=peak_block, command=command, notes=notes, echo=click.echo, use_xnnpack=not no_xnnpack,
                        repeats=repeats, remote_python=remote_python, identity=identity, ssh_options=ssh_options)
    from kd_edge.benchmarks import report

    for line in report.headline_ratios(doc):
        click.echo(line)
    if json_out:
        write_json(json_out, doc)
        click.echo(f"wrote {json_out}")
    if report_out:
        write_text(report_out, report.markdown(doc))
        click.echo(f"wrote {report_out}")
    if plots_dir:
        for p in report.plots(doc, plots_dir):
            click.echo(f"wrote {p}")
