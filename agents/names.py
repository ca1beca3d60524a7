"""Names and places: the patterns scenario, step and person ids must match, the roster's file name and
the shipped scenarios' folder. Small on purpose: the guardians' identity rules and every command
import it without the scenario model."""

from __future__ import annotations

from pathlib import Path

ID_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"  # usable as `steps.<id>` in Jinja2, so no hyphens
# One pattern for every identity dew knows (roster ids, guardians, requesters, actors); see
# guardians/identity.py for the normal form everything is compared in.
PERSON_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
# The roster of guardians beside the scenarios: not a scenario itself.
ROSTER_FILE = "guardians.yaml"


def shipped_directory() -> Path:
    """The scenarios shipped with dew: `scenarios/` beside `agents/`, in a checkout and in the wheel."""
    return Path(__file__).resolve().parent.parent / "scenarios"
