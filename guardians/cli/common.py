"""What every command shares: the workspace, identity, JSON output and error translation."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from dew.agents.errors import DewError
from dew.agents.hidden import visible
from dew.guardians.errors import IdentityRequired


class LiteralConsole(Console):
    """A console that shows everything literally: no Rich markup, no emoji codes (`:warning:`
    stays `:warning:`), no highlighting, and every hidden character (terminal escapes, bidi
    overrides, zero-width characters) written as a visible escape. Drafts, inputs and ids are
    untrusted text and a guardian must see exactly what they approve; styling is given as `Text`
    objects (`styled`), never as markup inside a string."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(visible(o) if isinstance(o, str) else o for o in objects), **kwargs)


console = LiteralConsole()
err_console = LiteralConsole(stderr=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line of text with some parts styled: styled(("Work item 3", "bold"), " · pending")."""
    return Text.assemble(*((visible(p[0]), p[1]) if isinstance(p, tuple) else visible(p) for p in parts))


def add_row(table: Table, *values: Any) -> None:
    """A table row whose cells are shown literally, like everything else."""
    table.add_row(*(Text(visible(v)) if isinstance(v, str) else v for v in values))


AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        envvar="DEW_USER",
        help="Who you are (roster id), declared, not proven: decides only in a workspace without users "
        "(otherwise: dew login). Env: DEW_USER.",
        show_envvar=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only.")]
# Long lists come a page at a time, the newest first: no command reads a whole table.
LimitOption = Annotated[int, typer.Option("--limit", min=1, max=10000, help="How many, the newest.")]
BeforeOption = Annotated[
    int | None, typer.Option("--before", min=1, metavar="ID", help="Only those before this id (the page before).")
]


def cores() -> int:
    """The cores this process may run on (its affinity or cgroup's, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def earlier_hint(command: str, rows: list[dict], key: str, limit: int, as_json: bool = False) -> None:
    """After a full page (oldest first), the command that shows the one before it (on stderr
    under --json, so a script reading a page knows there is more)."""
    if len(rows) == limit:
        hint = f"Earlier: {command} --before {rows[0][key]}" + (f" --limit {limit}" if limit != 100 else "")
        (err_console if as_json else console).print(hint)


def fail(error: DewError) -> typer.Exit:
    """Print a domain error as one clear line per problem on stderr; the exit code says its kind."""
    for line in error.message.splitlines():
        err_console.print(f"Error: {line}", soft_wrap=True)
    return typer.Exit(error.exit_code)


class DewGroup(TyperGroup):
    """Translates domain errors into one-line messages and exit codes, at the edge."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DewError as e:
            raise fail(e) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # a bug: say so in one line; DEW_DEBUG=1 shows the traceback
            if debugging() or type(e).__module__.startswith(("click", "typer")):
                raise
            raise fail(DewError(f"internal error: {type(e).__name__}: {e} (set DEW_DEBUG=1 for details)")) from None

    def list_commands(self, ctx):
        return list(self.commands)  # keep the order commands were added in, as the docs read


def debugging() -> bool:
    """DEW_DEBUG=1: show tracebacks (of internal errors, and behind a failed run) instead of one line."""
    return os.environ.get("DEW_DEBUG", "") not in ("", "0")


@dataclass
class AppState:
    home: str | None = None
    scenarios: str | None = None
    _ws: Any = field(default=None, repr=False)

    @property
    def settings(self):
        from dew.guardians.workspace import Settings

        return Settings.resolve(self.home, self.scenarios)

    def workspace(self):
        if self._ws is None:
            from dew.guardians.workspace import Workspace

            self._ws = Workspace(self.settings)
        return self._ws

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None


def state(ctx: typer.Context) -> AppState:
    return ctx.find_root().obj


def workspace(ctx: typer.Context):
    return state(ctx).workspace()


def warn_problems(problems: list[str]) -> None:
    """Scenario files that do not load, said once on stderr by commands that go on without them."""
    if problems:
        err_console.print(f"Warning: {len(problems)} problem(s) in scenario files; those scenarios are left out "
                          "(dew scenarios check shows them):")  # fmt: skip
        for line in problems:
            err_console.print(f"  {line}", soft_wrap=True)


def require_identity(actor: str | None, doing: str) -> str:
    if not actor:
        raise IdentityRequired(f"say who you are to {doing}: --as ID or DEW_USER")
    return actor


def default_requester(actor: str | None) -> str:
    if actor:
        return actor
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


@contextmanager
def progress_line(ws: Any, what: str) -> Iterator[None]:
    """A live line on a terminal while agents work: the run, the step and the seconds so far.

    A 135M model on two cores can take minutes on a long transcript; without this a guardian
    cannot tell a working machine from a hung one. Not shown when stderr is not a terminal."""
    if not err_console.is_terminal:
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(what)
        runtime = ws.runtime
        runtime.progress = lambda run_id, step: bar.update(task, description=f"{what}: run {run_id}, step {step}")
        try:
            yield
        finally:
            runtime.progress = None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


def short(text: str, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def safe(text: str) -> str:
    """Text from a draft, an input or a model with every hidden character made visible (the
    consoles do this for whatever they print; this is for text built into a larger string)."""
    return visible(text)
