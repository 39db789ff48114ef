"""``modelpack runs list|show`` and ``modelpack experiments list``: the tracking store from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .tables import cell_text, echo_json, json_option, table, when

if TYPE_CHECKING:
    from ..tracking.runs import Run


@click.group(help="List and show tracked runs (the store MODELPACK_TRACKING_URI names; default ./mlruns).")
def runs() -> None:
    pass


@runs.command("list", help="List runs with their params and metrics, newest first unless --order-by says "
                           "otherwise.")
@click.option("-e", "--experiment", "experiments", multiple=True, metavar="NAME",
              help="Only the runs of this experiment (repeatable; default: every experiment).")
@click.option("--filter", "filter_string", default="", metavar="EXPR",
              help="Only the runs that match, e.g. \"metrics.rmse < 60 and params.alpha = '0.01'\".")
@click.option("--order-by", "order_by", multiple=True, metavar="KEY",
              help="Sort by this, e.g. 'metrics.rmse' or 'start_time DESC' (repeatable).")
@click.option("--max-results", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Show at most this many runs.")
@json_option
def list_runs(experiments: tuple[str, ...], filter_string: str, order_by: tuple[str, ...], max_results: int,
              as_json: bool) -> None:
    from ..tracking import experiments as exp
    from ..tracking.search import search
    from ..tracking.store import Store

    store = Store.open()
    chosen = exp.by_names(store, list(experiments)) if experiments else exp.list_experiments(store)
    names = {e.experiment_id: e.name for e in chosen}
    found = search(store, list(names), filter_string or None, list(order_by), max_results) if chosen else []
    if as_json:
        echo_json([{**_run_dict(run), "experiment": names.get(run.info.experiment_id)} for run in found])
        return
    if not found:
        click.echo("No runs." if chosen else "No experiments yet: runs are logged with modelpack.start_run().")
        return
    param_keys = sorted({k for run in found for k in run.data.params})
    metric_keys = sorted({k for run in found for k in run.data.metrics})
    several = len({run.info.experiment_id for run in found}) > 1
    headers = ["RUN ID", "NAME", *(["EXPERIMENT"] if several else []), "STATUS", "STARTED",
               *(f"params.{k}" for k in param_keys), *(f"metrics.{k}" for k in metric_keys)]
    rows = [[run.info.run_id, run.info.run_name, *([names.get(run.info.experiment_id)] if several else []),
             run.info.status, when(run.info.start_time), *(run.data.params.get(k) for k in param_keys),
             *(run.data.metrics.get(k) for k in metric_keys)] for run in found]
    click.echo(table(headers, rows))


@runs.command("show", help="Show one run: status, times, params, metrics, tags, logged and registered models.")
@click.argument("run_id")
@json_option
def show_run(run_id: str, as_json: bool) -> None:
    from ..tracking import experiments as exp
    from ..tracking.models import logged_models_of
    from ..tracking.runs import get_run
    from ..tracking.store import Store

    store = Store.open()
    run = get_run(store, run_id)
    experiment = exp.get(store, run.info.experiment_id)
    logged = logged_models_of(store, run_id)
    registered = _registered_from(store, run_id)
    if as_json:
        echo_json({**_run_dict(run), "experiment": experiment.name, "logged_models": logged,
                   "registered_versions": registered})
        return
    info = run.info
    took = f" ({(info.end_time - info.start_time) / 1000:.1f} s)" if info.end_time is not None else ""
    source = " @ ".join(s for s in (info.source_name, info.source_git_commit) if s) or "-"
    lines = [f"Run:          {info.run_id}",
             f"Name:         {info.run_name}",
             f"Experiment:   {experiment.name} (id {experiment.experiment_id})",
             f"Status:       {info.status}",
             f"Started:      {when(info.start_time)}",
             f"Ended:        {when(info.end_time)}{took}",
             f"User:         {info.user_id}",
             f"Source:       {source}",
             f"Artifacts:    {info.artifact_uri}"]
    for title, values in (("Params", run.data.params), ("Metrics", run.data.metrics), ("Tags", run.data.tags)):
        lines += ["", f"{title}:", *_indented(values)]
    lines += ["", "Logged models:"]
    lines += [f"  runs:/{run_id}/{m['artifact_path']}  ({', '.join(m['flavors'])})" for m in logged] or ["  -"]
    if registered:
        lines += ["", "Registered as:"]
        lines += [f"  models:/{v['name']}/{v['version']}" + (f"  ({', '.join(v['aliases'])})" if v["aliases"] else "")
                  for v in registered]
    click.echo("\n".join(lines))


@click.group(help="The experiments of the tracking store (MODELPACK_TRACKING_URI; default ./mlruns).")
def experiments() -> None:
    pass


@experiments.command("list", help="List the experiments: id, name, number of runs, artifact location.")
@json_option
def list_experiments(as_json: bool) -> None:
    from sqlalchemy import func, select

    from ..tracking import experiments as exp
    from ..tracking.schema import runs as runs_table
    from ..tracking.store import Store

    store = Store.open()
    found = exp.list_experiments(store)
    with store.reading() as conn:
        counts: dict[int, int] = dict(conn.execute(select(runs_table.c.experiment_id, func.count())
                                   .where(runs_table.c.lifecycle_stage == "active")
                                   .group_by(runs_table.c.experiment_id)).all())
    if as_json:
        echo_json([{"experiment_id": e.experiment_id, "name": e.name, "artifact_location": e.artifact_location,
                    "lifecycle_stage": e.lifecycle_stage, "creation_time": e.creation_time,
                    "last_update_time": e.last_update_time, "tags": e.tags,
                    "runs": counts.get(int(e.experiment_id), 0)} for e in found])
        return
    if not found:
        click.echo("No experiments yet: runs are logged with modelpack.start_run().")
        return
    click.echo(table(["ID", "NAME", "RUNS", "CREATED", "ARTIFACT LOCATION"], [
        [int(e.experiment_id), e.name, counts.get(int(e.experiment_id), 0), when(e.creation_time),
         e.artifact_location] for e in found]))


def _run_dict(run: Run) -> dict[str, Any]:
    info = run.info
    return {"run_id": info.run_id, "run_name": info.run_name, "experiment_id": info.experiment_id,
            "status": info.status, "start_time": info.start_time, "end_time": info.end_time,
            "user_id": info.user_id, "source_name": info.source_name, "source_git_commit": info.source_git_commit,
            "artifact_uri": info.artifact_uri, "params": run.data.params, "metrics": run.data.metrics,
            "tags": run.data.tags}


def _indented(values: dict[str, Any]) -> list[str]:
    if not values:
        return ["  -"]
    width = max(len(k) for k in values)
    return [f"  {k.ljust(width)}  {cell_text(v)}" for k, v in sorted(values.items())]


def _registered_from(store: Any, run_id: str) -> list[dict[str, Any]]:
    """The registered versions whose source is this run: name, version, aliases."""
    from sqlalchemy import select

    from ..tracking.schema import model_versions, registered_model_aliases

    v, a = model_versions, registered_model_aliases
    with store.reading() as conn:
        rows = conn.execute(select(v.c.name, v.c.version).where(v.c.run_id == run_id)
                            .order_by(v.c.name, v.c.version)).all()
        aliases: dict[tuple[str, int], list[str]] = {}
        for name, version, alias in conn.execute(select(a.c.name, a.c.version, a.c.alias)
                                                 .where(a.c.name.in_({r.name for r in rows}))):
            aliases.setdefault((name, version), []).append(alias)
    return [{"name": r.name, "version": r.version, "aliases": sorted(aliases.get((r.name, r.version), []))}
            for r in rows]
