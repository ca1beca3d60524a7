"""`dew`: entry point, global options and command registration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import (
    ask_cmd,
    audit_cmds,
    brake_cmds,
    decide_cmds,
    demo_cmd,
    desk_cmds,
    keys_cmds,
    notify_cmds,
    people_cmds,
    released_cmds,
    report_cmds,
    retention_cmds,
    run_cmds,
    scenario_cmds,
    stats_cmds,
)
from .common import AppState, DewGroup

app = typer.Typer(
    name="dew",
    cls=DewGroup,
    help="dew: digital employees that draft under named human guardians.\n\n"
    "Agents draft. Guardians decide. Only an approved output is released. Auditors can trace every step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="DEW_HOME", help="Workspace folder (database, outbox). Default: ./.dew"),
    ] = None,
    scenarios: Annotated[
        Path | None,
        typer.Option(
            "--scenarios",
            envvar="DEW_SCENARIOS",
            help="Scenario folder. Default: ./scenarios if it exists, else the shipped ones.",
        ),
    ] = None,
):
    ctx.obj = AppState(home=str(home) if home else None, scenarios=str(scenarios) if scenarios else None)
    ctx.call_on_close(ctx.obj.close)


demo_cmd.register(app)
app.add_typer(scenario_cmds.app, name="scenarios")
app.add_typer(people_cmds.app, name="guardians")
ask_cmd.register(app)
run_cmds.register(app)
decide_cmds.register(app)
run_cmds.register_listings(app)
app.add_typer(released_cmds.app, name="released")
brake_cmds.register(app)
stats_cmds.register(app)
app.add_typer(audit_cmds.app, name="audit")
report_cmds.register(audit_cmds.app)
desk_cmds.register(app)
app.add_typer(desk_cmds.users_app, name="users")
app.add_typer(desk_cmds.tokens_app, name="tokens")
app.add_typer(desk_cmds.delegations_app, name="delegations")
app.add_typer(keys_cmds.app, name="keys")
app.add_typer(retention_cmds.app, name="retention")
app.add_typer(notify_cmds.app, name="notify")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
