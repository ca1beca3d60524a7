"""Every domain error dew raises, in one place.

The edges (CLI today, HTTP API later) translate these into messages and status codes; nothing
below the edges formats errors for people. ``code`` is stable and machine-readable.
"""

from __future__ import annotations


class DewError(Exception):
    """Base of every error a user may see. The message is one clear sentence."""

    code = "error"
    exit_code = 1
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


# --- scenarios -------------------------------------------------------------------------------
class ScenarioInvalid(DewError):
    """A scenario file cannot be loaded. ``problems`` lists each as 'file:line: field: what'."""

    code = "scenario_invalid"
    http_status = 422

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class ScenarioNotFound(DewError):
    code = "scenario_not_found"
    http_status = 404


class InputInvalid(DewError):
    code = "input_invalid"
    http_status = 422


# --- runs ---------------------------------------------------------------------------------------
class RunFailed(DewError):
    """A run could not reach its approval gate. It is marked failed and can be retried."""

    code = "run_failed"
    http_status = 502


class LLMError(RunFailed):
    """The model endpoint failed (refused, timed out, 5xx) or kept returning unusable output."""

    code = "llm_failed"


class LLMNotConfigured(DewError):
    code = "llm_not_configured"
    http_status = 503


# --- people, queue and decisions ----------------------------------------------------------------
class NotFound(DewError):
    code = "not_found"
    http_status = 404


class NotAuthorized(DewError):
    """The actor may not do this; the message says why."""

    code = "not_authorized"
    exit_code = 3
    http_status = 403


class IdentityRequired(DewError):
    code = "identity_required"
    exit_code = 3
    http_status = 401


class AlreadyDecided(DewError):
    code = "already_decided"
    exit_code = 4
    http_status = 409


class InvalidState(DewError):
    """The thing exists but is not in a state that allows the action (e.g. retrying a live run)."""

    code = "invalid_state"
    exit_code = 4
    http_status = 409


class DecisionInvalid(DewError):
    code = "decision_invalid"
    http_status = 422


class ReleaseError(DewError):
    code = "release_failed"
    http_status = 500


class AuditBroken(DewError):
    """The audit chain does not verify. ``seq`` is the first bad event."""

    code = "audit_broken"
    exit_code = 5
    http_status = 500

    def __init__(self, seq: int, message: str):
        self.seq = seq
        super().__init__(message)


class StorageError(DewError):
    code = "storage_error"
    http_status = 503
