"""Build hook: install dew's folders as the `dew` package (`dew.agents`, `dew.guardians`).

The repository keeps `agents/` and `guardians/` at its top level, but those are poor names to claim
in site-packages (`agents` is also the OpenAI Agents SDK's import name). In a wheel they become
`dew/agents` and `dew/guardians` (see `sources` in pyproject.toml). An editable install cannot
rewrite paths that way, so it gets a one-file `dew` package whose `__path__` is the source tree.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

DOC = '"""dew: digital employees that draft under named human guardians."""\n'


class DewPackageHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._tmp = tempfile.mkdtemp(prefix="dew-build-")
        init = os.path.join(self._tmp, "__init__.py")
        with open(init, "w", encoding="utf-8") as f:
            f.write(DOC)
            if version == "editable":
                # Development mode: `dew.agents` is the `agents/` folder of this checkout.
                f.write(f"__path__ = [{os.path.abspath(self.root)!r}]\n")
        if version == "editable":
            build_data["force_include_editable"][init] = "dew/__init__.py"
        else:
            build_data["force_include"][init] = "dew/__init__.py"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        import shutil

        shutil.rmtree(self._tmp, ignore_errors=True)
