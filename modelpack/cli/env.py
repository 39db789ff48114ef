"""``modelpack env list|remove|prune``: look after the cache of rebuilt environments."""

from __future__ import annotations

import json
import time

import click


def _size(num: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num < 1024 or unit == "GB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return ""  # unreachable


def _ago(stamp: float) -> str:
    seconds = max(0.0, time.time() - stamp)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


@click.group(help="Manage the cached model environments (under MODELPACK_HOME, default ~/.cache/modelpack).")
def env() -> None:
    pass


@env.command("list", help="List the cached environments: hash, Python, size, last use and the models using them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_envs(as_json: bool) -> None:
    from ..env.cache import Cache, last_used, size_of

    cache = Cache()
    rows = []
    for environment in cache.environments():
        info = environment.info()
        rows.append({
            "hash": environment.key,
            "python": info.get("python", "?"),
            "manager": info.get("manager", "?"),
            "size": size_of(environment.path),
            "last_used": last_used(environment),
            "models": environment.usage().get("models", []),
            "path": str(environment.path),
        })
    unfinished = cache.unfinished()
    if as_json:
        click.echo(json.dumps({"root": str(cache.root), "environments": rows,
                               "unfinished": [str(p) for p in unfinished]}, indent=2))
        return
    if not rows:
        click.echo(f"No environments in {cache.envs}")
    else:
        table = [("HASH", "PYTHON", "MANAGER", "SIZE", "LAST USED", "MODELS")]
        for row in rows:
            models = [m.rstrip("/").rsplit("/", 1)[-1] for m in row["models"]]
            shown = ", ".join(models[:3]) + (f" (+{len(models) - 3})" if len(models) > 3 else "")
            table.append((row["hash"], row["python"], row["manager"], _size(row["size"]),
                          _ago(row["last_used"]), shown or "-"))
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        click.echo(f"\n{len(rows)} environment(s), {_size(sum(r['size'] for r in rows))} in {cache.root}")
    if unfinished:
        click.echo(f"{len(unfinished)} unfinished build(s) (killed, failed or in progress); "
                   "`modelpack env prune` removes the stale ones")


@env.command("remove", help="Remove cached environments by hash (a unique prefix is enough).")
@click.argument("hashes", nargs=-1, required=True, metavar="HASH...")
def remove_envs(hashes: tuple[str, ...]) -> None:
    from ..env.cache import Cache
    from ..errors import EnvironmentBuildError

    cache = Cache()
    for prefix in hashes:
        hits = cache.match(prefix)
        if len(hits) != 1:
            what = "No environment" if not hits else f"{len(hits)} environments"
            raise click.UsageError(f"{what} in {cache.envs} match '{prefix}'; see `modelpack env list`")
        environment = hits[0]
        if not cache.remove(environment.key):
            raise EnvironmentBuildError(f"Environment {environment.key} is being built right now; try again later")
        click.echo(f"Removed environment {environment.key}")


@env.command("prune", help="Remove environments not used for a while, unfinished builds and old build logs.")
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=30, show_default=True, metavar="DAYS",
              help="Remove environments not used for this many days (0: all of them).")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
def prune_envs(days: float, dry_run: bool) -> None:
    from ..env.cache import Cache

    removed = Cache().prune(days, dry_run=dry_run)
    for item in removed:
        click.echo(f"{'Would remove' if dry_run else 'Removed'} {item}")
    if not removed:
        click.echo("Nothing to remove")
