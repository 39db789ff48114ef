"""``modelpack models``: the Model Registry from the command line - list, show, register, alias, delete-alias."""

from __future__ import annotations

import click

from .tables import echo_json, json_option, key_values, table, when


@click.group(help="The Model Registry: registered models, their numbered versions and aliases. "
                  "A version is served as models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS.")
def models() -> None:
    pass


@models.command("list", help="List the registered models: newest version, aliases, last update.")
@json_option
def list_models(as_json: bool) -> None:
    from ..registry import list_registered_models

    found = list_registered_models()
    if as_json:
        echo_json([m.to_dict() for m in found])
        return
    if not found:
        click.echo("No registered models. Register one with: modelpack models register URI NAME")
        return
    click.echo(table(["NAME", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"], [
        [m.name, m.latest_version, key_values(m.aliases), when(m.last_updated_timestamp), m.description]
        for m in found]))


@models.command("show", help="Show a registered model and its versions.")
@click.argument("name")
@json_option
def show_model(name: str, as_json: bool) -> None:
    from ..registry import get_registered_model, list_model_versions

    model = get_registered_model(name)
    versions = list_model_versions(name)
    if as_json:
        echo_json({**model.to_dict(), "versions": [v.to_dict() for v in versions]})
        return
    lines = [f"Name:         {model.name}",
             f"Description:  {model.description or '-'}",
             f"Created:      {when(model.creation_timestamp)}",
             f"Updated:      {when(model.last_updated_timestamp)}",
             f"Aliases:      {key_values(model.aliases) or '-'}",
             f"Tags:         {key_values(model.tags) or '-'}",
             ""]
    if versions:
        lines.append(table(["VERSION", "CREATED", "ALIASES", "RUN ID", "SOURCE"], [
            [v.version, when(v.creation_timestamp), ", ".join(v.aliases), v.run_id, v.source]
            for v in reversed(versions)]))
    else:
        lines.append("No versions.")
    click.echo("\n".join(lines))


@models.command("register", help="Register the model at URI (runs:/RUN_ID/PATH, a model directory, models:/...) "
                                 "as the next version of NAME; the version keeps its own read-only copy.")
@click.argument("uri")
@click.argument("name")
@click.option("--description", default=None, help="Description of the new version.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag of the new version (repeatable).")
@json_option
def register(uri: str, name: str, description: str | None, tags: tuple[str, ...], as_json: bool) -> None:
    from ..errors import InvalidInputError, quote
    from ..registry import register_model

    pairs = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--tag takes KEY=VALUE, got {quote(tag)}")
        pairs[key] = value
    version = register_model(uri, name, tags=pairs, description=description)
    if as_json:
        echo_json(version.to_dict())
        return
    click.echo(f"Registered {version.name} version {version.version} ({version.uri}) from {version.source}")


@models.command("alias", help="Point ALIAS (e.g. champion) of NAME at VERSION, moving it from the version it "
                              "named; serve it as models:/NAME@ALIAS.")
@click.argument("name")
@click.argument("alias")
@click.argument("version")
@json_option
def alias(name: str, alias: str, version: str, as_json: bool) -> None:
    from ..registry import get_registered_model, set_alias

    previous = get_registered_model(name).aliases.get(alias)
    moved = set_alias(name, alias, version)
    if as_json:
        echo_json({"name": name, "alias": alias, "version": moved.version, "previous_version": previous})
        return
    was = f" (was version {previous})" if previous is not None and previous != moved.version else ""
    click.echo(f"{name}@{alias} -> version {moved.version}{was}")


@models.command("delete-alias", help="Remove ALIAS from NAME (the version itself stays).")
@click.argument("name")
@click.argument("alias")
@json_option
def delete_alias_command(name: str, alias: str, as_json: bool) -> None:
    from ..registry import delete_alias, get_registered_model

    previous = get_registered_model(name).aliases.get(alias)
    delete_alias(name, alias)
    if as_json:
        echo_json({"name": name, "alias": alias, "deleted": True, "version": previous})
        return
    click.echo(f"Deleted alias {name}@{alias}" + (f" (it named version {previous})" if previous else ""))
