"""``modelpack generate-dockerfile`` and ``modelpack build-docker``: a container image for one model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from .options import model_option

base_image_option = click.option(
    "--base-image", default=None, metavar="IMAGE",
    help="Base image with python3 and venv (default: python:X.Y-slim for the model's recorded Python).",
)
wheel_option = click.option(
    "--modelpack-wheel", "modelpack_wheel", default=None, metavar="WHEEL",
    type=click.Path(exists=True, dir_okay=False),
    help="Install modelpack from this wheel. Default: the modelpack running this command (a development "
         "checkout is built into a wheel).",
)


@click.command(help="Write a build context for one model: its files and a Dockerfile that installs "
                    "its recorded requirements at build time and serves it on port 8080.")
@model_option
@click.option("-d", "--output-directory", "output_dir", required=True, metavar="DIR",
              help="Directory to write (must not exist, or be empty).")
@base_image_option
@wheel_option
def generate_dockerfile(model_uri: str, output_dir: str, base_image: str | None,
                        modelpack_wheel: str | None) -> None:
    from ..container import generate_build_context

    context = generate_build_context(model_uri, output_dir, base_image=base_image,
                                     modelpack_wheel=modelpack_wheel)
    click.echo(f"Wrote {context.dockerfile} (base image {context.base_image}).")
    click.echo(f"Build it with: docker build -t NAME {context.path}")


@click.command(
    help="Build a container image for one model with docker, podman or buildah. "
         "Arguments after `--` go to the builder as they are (e.g. -- --isolation chroot).",
)
@model_option
@click.option("-n", "--name", required=True, metavar="NAME", help="Image name and tag, e.g. diabetes:1.")
@base_image_option
@wheel_option
@click.option("--builder", type=click.Choice(["auto", "docker", "podman", "buildah"]), default="auto",
              show_default=True, help="Tool that builds the image; auto takes the first usable one.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="Build argument for the Dockerfile (repeatable), e.g. PIP_INDEX_URL=...")
@click.argument("builder_args", nargs=-1, type=click.UNPROCESSED)
def build_docker(model_uri: str, name: str, base_image: str | None, modelpack_wheel: str | None, builder: str,
                 build_args: tuple[str, ...], builder_args: tuple[str, ...]) -> None:
    from ..container import build_image, find_builder, generate_build_context

    tool = find_builder(builder)  # before any work: no builder, no build context
    with tempfile.TemporaryDirectory(prefix="modelpack-image-") as tmp:
        context = generate_build_context(model_uri, Path(tmp) / "context", base_image=base_image,
                                         modelpack_wheel=modelpack_wheel)
        build_image(context.path, name, builder=tool, build_args=build_args, extra_args=builder_args)
    click.echo(f"Built image {name} with {tool}. Run it with: docker run -p 8080:8080 {name}")
