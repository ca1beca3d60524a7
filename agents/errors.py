"""The errors of the agents layer: scenarios, inputs, tools, models and runs.

`DewError` is the base of every error a person may see, in either layer; `guardians/errors.py`
holds the errors of people, queues, decisions, release and audit. The edges (CLI, HTTP API)
translate any `DewError` into a message and an exit code or HTTP status; nothing below the edges
formats errors for people. `code` is stable and machine-readable (docs/errors.md lists them all).
"""

from __future__ import annotations

from typing import Any


class DewError(Exception):
    """Base of every error a user may see. The message is one clear sentence."""

    code = "error"
    exit_code = 1
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


# --- scenarios and inputs ------------------------------------------------------------------------
class ScenarioInvalid(DewError):
    """A scenario file cannot be loaded. `problems` lists each as 'file:line: field: what'."""

    code = "scenario_invalid"
    http_status = 422

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class ScenarioNotFound(DewError):
    """No scenario has that id (or a recorded scenario version is missing)."""

    code = "scenario_not_found"
    http_status = 404


class InputInvalid(DewError):
    """An input, argument or setting given by a person does not fit what is declared."""

    code = "input_invalid"
    http_status = 422


class InputMissing(InputInvalid):
    """A required input of a scenario was not given."""

    code = "input_missing"

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name


# --- tools ---------------------------------------------------------------------------------------
class ToolConflict(DewError):
    """Two installed tools claim one name; neither is chosen silently."""

    code = "tool_conflict"
    http_status = 500


# --- runs ----------------------------------------------------------------------------------------
class RunFailed(DewError):
    """A run could not reach its approval gate. It is marked failed and can be retried."""

    code = "run_failed"
    http_status = 502


class ToolFailed(RunFailed):
    """A tool refused its arguments or failed; the run (or the model calling it) sees why."""

    code = "tool_failed"


class LLMError(RunFailed):
    """The model endpoint failed (refused, timed out, 5xx) or kept returning unusable output."""

    code = "llm_failed"


class EndpointBusy(LLMError):
    """A model call waited for its endpoint's limits until DEW_LLM_QUEUE_TIMEOUT and was not sent."""

    code = "endpoint_busy"
    http_status = 503


class LLMNotConfigured(DewError):
    """No model endpoint is configured and the embedded model cannot start."""

    code = "llm_not_configured"
    http_status = 503


# --- data that may not go where it was asked to ---------------------------------------------------
class EndpointRefused(DewError):
    """A scenario's data class is above what its model endpoint may receive (see agents/endpoints.py)."""

    code = "endpoint_refused"
    exit_code = 3
    http_status = 403


class PersonalDataRefused(InputInvalid):
    """An input holds personal data and the scenario refuses it there (`pii: refuse`)."""

    code = "personal_data_refused"
