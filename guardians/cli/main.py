"""`dew`: entry point, global options and the table of commands."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.main

if TYPE_CHECKING:
    from typer._click import Command  # click's Command, as the typer this was written for vendors it

from .common import AppState, DewGroup

# Every top-level command, in the order `dew --help` and docs/cli.md list them: the module that
# defines it and, for a group of commands, the module's Typer app that holds them (None: the
# module's `register` functions add the command). A module is imported, and its commands built,
# only when one of them is looked up, so `dew inbox` does not pay for the web server,
# cryptography's key files or 60 other commands' parameters.
COMMANDS: dict[str, tuple[str, str | None]] = {
    "demo": ("demo_cmd", None),
    "ask": ("ask_cmd", None),
    "run": ("run_cmds", None),
    "inbox": ("run_cmds", None),
    "show": ("run_cmds", None),
    "approve": ("decide_cmds", None),
    "reject": ("decide_cmds", None),
    "edit": ("decide_cmds", None),
    "revise": ("decide_cmds", None),
    "runs": ("run_cmds", None),
    "retry": ("run_cmds", None),
    "repair": ("run_cmds", None),
    "pause": ("brake_cmds", None),
    "resume": ("brake_cmds", None),
    "recall": ("brake_cmds", None),
    "escalate": ("brake_cmds", None),
    "stats": ("stats_cmds", None),
    "serve": ("desk_cmds", None),
    "worker": ("desk_cmds", None),
    "login": ("desk_cmds", None),
    "logout": ("desk_cmds", None),
    "scenarios": ("scenario_cmds", "app"),
    "guardians": ("people_cmds", "app"),
    "released": ("released_cmds", "app"),
    "audit": ("audit_cmds", "app"),
    "users": ("desk_cmds", "users_app"),
    "tokens": ("desk_cmds", "tokens_app"),
    "delegations": ("desk_cmds", "delegations_app"),
    "keys": ("keys_cmds", "app"),
    "retention": ("retention_cmds", "app"),
    "notify": ("notify_cmds", "app"),
}


def build(module_name: str) -> dict[str, Command]:
    """The commands one module defines, built as click commands."""
    module = importlib.import_module(f"{__package__}.{module_name}")
    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)
    for hook in ("register", "register_listings"):
        if hasattr(module, hook):
            getattr(module, hook)(holder)
    for name, (where, group) in COMMANDS.items():
        if where == module_name and group is not None:
            holder.add_typer(getattr(module, group), name=name)
    return dict(typer.main.get_group(holder).commands)


class LazyCommands(MutableMapping[str, "Command"]):
    """The root group's commands: every name known from COMMANDS, each built when looked up."""

    def __init__(self) -> None:
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built and name in COMMANDS:
            self._built.update(build(COMMANDS[name][0]))
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        raise TypeError(f"add `{name}` to COMMANDS in {__name__}, not to the built group")

    def __delitem__(self, name: str) -> None:
        raise TypeError("the commands are fixed by COMMANDS")

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS


class RootGroup(DewGroup):
    """`dew` itself: commands built on demand (help, the docs and suggestions list them all)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.commands:  # registered on `app` directly: it would be lost
            raise TypeError(f"add {', '.join(self.commands)} to COMMANDS in {__name__}, not to `app`")
        self.commands = LazyCommands()


app = typer.Typer(
    name="dew",
    cls=RootGroup,
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
