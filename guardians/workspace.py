"""A workspace: its folder (outbox), its database, its scenario catalogue and its roster."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from dew.agents.errors import ScenarioInvalid, ScenarioNotFound
from dew.agents.names import shipped_directory
from dew.guardians.errors import InvalidState, StorageError

from .db import make_engine, normalize_url, transaction, upgrade
from .models import ScenarioVersion

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from dew.agents.llm import ModelProvider
    from dew.agents.loader import LoadedScenario
    from dew.agents.runtime import Runtime


ENGINES = ("threads", "procrastinate")  # who executes runs: see engine.py


@dataclass(frozen=True)
class Settings:
    home: Path
    scenarios_dir: Path
    database_url: str
    engine: str = "threads"  # who executes runs: "threads" in the server's process, or "procrastinate" (engine.py)

    @classmethod
    def resolve(
        cls, home: str | Path | None = None, scenarios: str | Path | None = None, database_url: str | None = None
    ) -> Settings:
        home = Path(home or os.environ.get("DEW_HOME") or ".dew").expanduser().resolve()
        if scenarios is None:
            scenarios = os.environ.get("DEW_SCENARIOS")
        if scenarios is None:
            scenarios = Path("scenarios") if Path("scenarios").is_dir() else shipped_directory()
        url = database_url or os.environ.get("DEW_DATABASE_URL") or f"sqlite:///{home / 'dew.db'}"
        engine = (os.environ.get("DEW_ENGINE") or "threads").strip().lower()
        return cls(home=home, scenarios_dir=Path(scenarios).expanduser().resolve(), database_url=normalize_url(url),
                   engine=engine)  # fmt: skip

    def check_engine(self) -> None:
        """Refuse an engine that does not exist, or procrastinate on a database other than PostgreSQL.
        Here rather than in engine.py, which every workspace would then import with the run stack."""
        if self.engine not in ENGINES:
            raise InvalidState(f"DEW_ENGINE is '{self.engine}'; it takes one of: {', '.join(ENGINES)}")
        if self.engine == "procrastinate" and make_url(self.database_url).get_backend_name() != "postgresql":
            raise InvalidState(
                f"DEW_ENGINE=procrastinate needs PostgreSQL, and the database is {self.database_label}; "
                "set DEW_DATABASE_URL=postgresql://USER@HOST:PORT/DB, or leave DEW_ENGINE unset for the in-process workers"
            )

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def database_label(self) -> str:
        """The database URL with any password hidden, for display."""
        return make_url(self.database_url).render_as_string(hide_password=True)


class Workspace:
    def __init__(
        self,
        settings: Settings,
        provider: ModelProvider | None = None,
        *,
        sync_roster: bool = True,
        engine: Engine | None = None,
        saver_pool: Any = None,
    ):
        """`engine` and `saver_pool` (checkpoints.saver_pool), when given, are the caller's, shared
        with other workspaces of the process and closed by the caller, not here: a worker's job
        threads each have a workspace, and all of them together hold a bounded number of
        database connections."""
        self.settings = settings
        settings.check_engine()  # DEW_ENGINE names one, and procrastinate has PostgreSQL
        try:
            self.settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create the workspace folder {settings.home}: {e.strerror or e}") from None
        self._owns_engine = engine is None
        self.engine = engine or make_engine(settings.database_url)
        self._saver_pool = saver_pool
        try:
            upgrade(self.engine)
        except DBAPIError as e:
            if self._owns_engine:
                self.engine.dispose()
            reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
            raise StorageError(f"cannot open the database {settings.database_label}: {reason}") from None
        self._provider = provider
        self._catalogue: dict[str, LoadedScenario] | None = None
        self.catalogue_problems: list[str] = []
        self._versions: dict[str, LoadedScenario] = {}
        self._stack = ExitStack()
        self._runtime: Runtime | None = None
        if sync_roster:
            from .roster import sync_roster_file

            sync_roster_file(self)

    @property
    def provider(self) -> ModelProvider:
        """The model endpoints runs call: the given provider, or the one DEW_* settings describe
        (made when first asked for: a listing calls no model)."""
        if self._provider is None:
            from dew.agents.llm import EnvModelProvider

            self._provider = EnvModelProvider()
        return self._provider

    # -- scenarios ------------------------------------------------------------------------------
    @property
    def catalogue(self) -> dict[str, LoadedScenario]:
        """The scenarios that load; `catalogue_problems` says why others do not."""
        if self._catalogue is None:
            # The scenario model is imported by commands that read scenarios, not by every listing.
            from dew.agents.loader import load_catalogue

            self._catalogue, self.catalogue_problems = load_catalogue(self.settings.scenarios_dir)
        return self._catalogue

    def scenario(self, scenario_id: str) -> LoadedScenario:
        try:
            return self.catalogue[scenario_id]
        except KeyError:
            if self.catalogue_problems:  # perhaps it is in a file that does not load: say why
                raise ScenarioInvalid(
                    str(self.settings.scenarios_dir),
                    [f"no scenario '{scenario_id}' loaded from {self.settings.scenarios_dir}; these files have problems:",
                     *self.catalogue_problems],
                ) from None  # fmt: skip
            known = ", ".join(sorted(self.catalogue)) or "none"
            raise ScenarioNotFound(
                f"no scenario '{scenario_id}' in {self.settings.scenarios_dir} (known: {known})"
            ) from None

    def stored_scenario(self, sha256: str) -> LoadedScenario:
        """The exact scenario text a run started with, whatever the file says today."""
        loaded = self._versions.get(sha256)
        if loaded is None:
            from dew.agents.loader import load_text

            with transaction(self.engine) as s:
                row = s.get(ScenarioVersion, sha256)
            if row is None:
                raise ScenarioNotFound(f"scenario version {sha256[:12]} is not recorded in this workspace")
            loaded = self._versions[sha256] = load_text(row.text, f"{row.scenario_id}@{sha256[:12]}", recorded=True)
        return loaded

    # -- runtime --------------------------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            # LangGraph is imported only by commands that drive runs.
            from dew.agents.checkpoints import open_saver
            from dew.agents.runtime import Runtime

            saver = self._stack.enter_context(open_saver(self.settings.database_url, self._saver_pool))
            self._runtime = Runtime(saver, self.provider, data_dir=self.settings.scenarios_dir)
        return self._runtime

    def close(self) -> None:
        self._stack.close()
        self._runtime = None
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
