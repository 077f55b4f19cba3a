"""``kd-edge data``: synthesise blurred/sharp datasets and check DBlur-layout folders."""
from pathlib import Path

import click

from kd_edge.cli.messages import shows_warnings_in_one_line
from kd_edge.cli.paths import ExistingPath, ensure_output_parent
from kd_edge.errors import InputFileError, KdEdgeError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(context_settings=CONTEXT_SETTINGS)
def data():
    """Synthesise blurred/sharp datasets and check DBlur-layout folders."""


@data.command(context_settings=CONTEXT_SETTINGS, short_help="Synthesise a blurred/sharp dataset (train/ + test/).")
@click.argument("paths", nargs=-1, required=True, metavar="[SRC_DIR] OUT_DIR")
@click.option("--count", default=64, show_default=True, type=click.IntRange(min=0),
              help="Pairs to generate (0 with SRC_DIR: one pair per tile of every source image).")
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=16), help="Pair size in px (square).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed; the same options regenerate identical files.")
@click.option("--test-fraction", default=0.25, show_default=True, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="Share of pairs written to test/ (the rest go to train/).")
@click.option("--camera", is_flag=True,
              help="Realistic camera blur: the preset kernels 1-29 px biased to mild shake, all trajectories, linear "
                   "light with highlights, shot noise, JPEG, 8% untouched pairs, 40% soft sharp photos, no defocus "
                   "(each option below still wins).")
@click.option("--kernel-min", default=None, type=click.IntRange(min=1), help="Smallest kernel (px, odd; 1 = no blur) [13; --camera 1].")
@click.option("--kernel-max", default=None, type=click.IntRange(min=1), help="Largest kernel (px, odd) [29].")
@click.option("--kernel-bias", default=None, type=click.FloatRange(min=0.0, min_open=True), metavar="B",
              help="Kernel size ~ U**B over the sizes: 1 uniform, 2 most pairs mild [1; --camera 2].")
@click.option("--trajectories", default=None, metavar="LIST",
              help="Comma-separated: random-walk, linear, curved, frames (frame averaging) [random-walk; --camera all].")
@click.option("--linear-light/--no-linear-light", default=None, help="Blur in linear intensity, not in sRGB values.")
@click.option("--srgb-blur", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="With --linear-light: share of pairs blurred in sRGB values instead, as synthetic benchmarks "
                   "(Levin et al.) and cameras that average encoded frames make them [0].")
@click.option("--highlights", default=None, type=click.FloatRange(0.0, 1.0), metavar="P",
              help="Probability of boosting highlights 1.5-4x before the blur (saturated streaks; needs linear light).")
@click.option("--shot-noise", default=None, type=click.FloatRange(min=0.0), metavar="A",
              help="Signal-dependent noise in linear light, variance a*x with a uniform in [0, A] (e.g. 0.002).")
@click.option("--jpeg", default=None, type=click.FloatRange(0.0, 1.0), metavar="P",
              help="Probability of JPEG re-compression of the blurred image.")
@click.option("--jpeg-min", default=None, type=click.IntRange(1, 95), metavar="Q", help="JPEG quality uniform in [Q, 95] [60].")
@click.option("--identity", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="Share of pairs left untouched (blur == sharp) so a model learns to keep sharp photos.")
@click.option("--builtin-mix", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="With SRC_DIR: share of pairs drawn from the built-in set (scikit-image photos, dead leaves).")
@click.option("--max-side", default=None, type=click.IntRange(min=0), metavar="PX",
              help="With SRC_DIR: shrink (area filter) every photo whose longer side exceeds PX before tiling, so "
                   "a tile of a high-resolution photo holds a scene, not a patch of skin [0: off].")
@click.option("--identity-native/--no-identity-native", default=None,
              help="With --max-side: cut the untouched pairs from the photos at their own resolution, so a model "
                   "also sees soft full-resolution photos it must leave alone, not only crisp shrunk ones [off].")
@click.option("--soft-sharp", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="Share of pairs whose sharp photo is first softened by a Gaussian that stays in the target, so "
                   "a model removes the shake but keeps a soft photo's softness [0; --camera 0.4].")
@click.option("--soft-sigma", default=None, type=click.FloatRange(0.3, 3.0), metavar="SIGMA",
              help="With --soft-sharp: the softening's sigma is uniform in [0.3, SIGMA] px [1.2].")
@click.option("--saturated", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="Share of pairs whose sharp image is dead leaves in saturated colours (a channel at 0 or 1, wide "
                   "flat regions), so a model sees noisy, clipped saturated areas and leaves them flat [0].")
@click.option("--moving-subject", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="Share of blurred pairs where only a subject (a feathered matte of 1-3 ellipses) moves over a "
                   "static background, as in video of a moving head, so a model learns to leave still regions "
                   "alone; those pairs have no kernel file [0].")
@click.option("--rotation", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="Share of blurred pairs that also turn in-plane during the exposure (a camera's roll, a turning "
                   "head): non-uniform blur, none at the centre of the turn; those pairs have no kernel file [0].")
@click.option("--rotation-max", default=None, type=click.FloatRange(0.0, 15.0, min_open=True), metavar="DEG",
              help="With --rotation: the turn is uniform in [-DEG, DEG] degrees about a point of the crop [4].")
@click.option("--defocus", default=None, type=click.FloatRange(min=0.0), metavar="SIGMA",
              help="Add Gaussian defocus, sigma uniform in [0, SIGMA] px per pair, as blur to remove [0: none]. "
                   "Measured in issue 13: it teaches a model to sharpen soft sharp photos.")
@click.option("--noise", default=None, type=click.FloatRange(min=0.0), metavar="SIGMA",
              help="Add Gaussian noise, sigma uniform in [0, SIGMA] (fraction of full scale, e.g. 0.01) [0].")
@click.option("--photo-fraction", default=None, type=click.FloatRange(0.0, 1.0), metavar="F",
              help="Built-in source only: share of scikit-image photographs vs dead-leaves images [0.35].")
@click.option("--from-json", "from_json", type=ExistingPath(dir_okay=False, path_type=Path), default=None,
              metavar="SYNTH_JSON", help="Regenerate the set an earlier synth.json describes (its parameters win).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes generating pairs (the files are identical for any number).")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists and is not empty.")
@shows_warnings_in_one_line  # a skipped source file is one line, not a UserWarning with its source line
def synth(paths, count, size, seed, test_fraction, camera, photo_fraction, from_json, workers, force, **options):
    """Write a DBlur-layout dataset of synthetic camera-shake blur to OUT_DIR (train/ and test/).

    SRC_DIR is a folder of sharp images (tiled or cropped to --size); without it, the photographs bundled
    with scikit-image and procedural dead-leaves images are used (no download). Every kernel is saved
    as <split>/kernels/<name>.npy (except a moving subject's) and every parameter in OUT_DIR/synth.json.
    """
    if len(paths) > 2:
        raise click.UsageError(f"expected [SRC_DIR] OUT_DIR, got {len(paths)} paths")
    src_dir, out_dir = (None, paths[0]) if len(paths) == 1 else paths
    if src_dir is not None and not Path(src_dir).is_dir():
        raise InputFileError(src_dir, "no such folder" if not Path(src_dir).exists() else "is a file, not a folder")
    ensure_output_parent(out_dir)  # before any image is made: one line if OUT_DIR cannot be written there
    from kd_edge.data.synth import CAMERA_PRESET, DEFAULT_PHOTO_FRACTION, SynthParams, regenerate, synthesize

    if from_json is not None:
        meta = regenerate(from_json, out_dir, src_dir=src_dir, force=force, progress=True, workers=workers)
        _summary(out_dir, meta)
        return
    if photo_fraction is not None and src_dir is not None:
        raise click.UsageError("--photo-fraction applies to the built-in source only (no SRC_DIR)")
    if count == 0 and src_dir is None:
        raise click.UsageError("--count 0 (every tile) needs a SRC_DIR")
    chosen = {name: getattr(SynthParams(), name) for name in options}  # version-1 defaults
    if camera:
        chosen.update({k: v for k, v in CAMERA_PRESET.items() if k in chosen})
    chosen.update({k: v for k, v in options.items() if v is not None})
    meta = synthesize(out_dir, src_dir, count=count, size=size, seed=seed, test_fraction=test_fraction,
                      photo_fraction=DEFAULT_PHOTO_FRACTION if photo_fraction is None else photo_fraction,
                      force=force, progress=True, workers=workers, **chosen)
    _summary(out_dir, meta)


def _summary(out_dir, meta):
    stats = meta["psnr_blur_vs_sharp"]
    rate = meta["pairs"] / max(meta["seconds"], 1e-9)
    size = meta["size"]
    click.echo(f"{out_dir}: {meta['pairs']} pairs of {size}x{size} ({meta['train']} train, {meta['test']} test) "
               f"in {meta['seconds']:.1f} s ({rate:.1f} pairs/s)")
    click.echo(f"  blur vs sharp PSNR: mean {stats['mean']:.2f} dB, median {stats['median']:.2f} "
               f"(5-95%: {stats['p05']:.2f}-{stats['p95']:.2f})")
    click.echo(f"  kernels {meta['kernel_min']}-{meta['kernel_max']} px, defocus <= {meta['defocus']}, "
               f"noise <= {meta['noise']}, seed {meta['seed']}; parameters in {Path(out_dir) / 'synth.json'}")
    if meta.get("camera"):
        click.echo(f"  camera model: {meta['blur_model']}")


@data.command(context_settings=CONTEXT_SETTINGS, short_help="Check a DBlur-layout folder; exit 1 if a pair is unusable.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON.")
@click.option("--quick", is_flag=True, help="Read image headers only (fast; does not detect truncated data).")
@click.pass_context
def check(ctx, directory, json_path, quick):
    """Check a DBlur-layout folder: DIR/blur + DIR/sharp, or a root with train/ test/ validation/ splits.

    Prints counts, image sizes and every problem by file. Errors (the pair is unusable): missing
    counterpart, size mismatch, unreadable or truncated file. Warnings (normalised by the pipeline):
    grayscale, alpha channel, 16-bit. Exit code 1 when any pair is unusable.
    """
    from kd_edge.data.dblur import check as check_dataset

    if not directory.exists():
        raise KdEdgeError(f"{directory}: no such directory")
    report = check_dataset(directory, decode=not quick)
    click.echo(report.format())
    if json_path is not None:
        from kd_edge.atomic import write_json

        write_json(json_path, report.to_dict())
    if not report.ok:
        ctx.exit(1)
