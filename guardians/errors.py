"""The errors of the guardians layer: people, queues, decisions, release, audit and storage.

They share `DewError` (agents/errors.py) as their base, so each edge translates every error of
either layer in one place; the rules behind them live here, in `guardians`, not in `agents`.
"""

from __future__ import annotations

from dew.agents.errors import DewError


class NotFound(DewError):
    """No such work item, run or person."""

    code = "not_found"
    http_status = 404


class NotAuthorized(DewError):
    """The actor may not do this; the message says why."""

    code = "not_authorized"
    exit_code = 3
    http_status = 403


class SignatureRefused(NotAuthorized):
    """A decision that must be signed came without a signature, or its signature does not hold
    (unknown or revoked key, another signer, a statement that differs from the decision made)."""

    code = "signature_refused"


class IdentityRequired(DewError):
    """The action needs to know who is acting."""

    code = "identity_required"
    exit_code = 3
    http_status = 401


class NotAuthenticated(DewError):
    """A password, token or session that does not prove who someone is (wrong, expired, revoked)."""

    code = "not_authenticated"
    exit_code = 3
    http_status = 401


class CsrfRefused(NotAuthenticated):
    """A state-changing browser request without its session's CSRF token (a forged or stale form)."""

    code = "csrf_refused"
    http_status = 403


class TooManyAttempts(DewError):
    """Too many failed logins in a short time; `retry_after` says how many seconds to wait."""

    code = "too_many_attempts"
    exit_code = 3
    http_status = 429

    def __init__(self, message: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(message)


class IdentityInvalid(DewError):
    """An identity is not of the one form dew accepts (a–z, 0–9, '.', '_', '-'); the message says why."""

    code = "identity_invalid"
    exit_code = 3
    http_status = 400


class AlreadyDecided(DewError):
    """The work item has been decided; a decision is final."""

    code = "already_decided"
    exit_code = 4
    http_status = 409


class InvalidState(DewError):
    """The thing exists but is not in a state that allows the action (e.g. retrying a live run)."""

    code = "invalid_state"
    exit_code = 4
    http_status = 409


class AlreadyHandedOff(InvalidState):
    """A run's release has already started its hand-off run (retries race to it)."""

    code = "already_handed_off"


class DecisionInvalid(DewError):
    """A decision is missing what it needs (a reason, feedback, an acceptable edit)."""

    code = "decision_invalid"
    http_status = 422


class ReleaseError(DewError):
    """An approved output could not be delivered; the approval stands and a retry completes it."""

    code = "release_failed"
    http_status = 500


class AuditBroken(DewError):
    """The audit chain does not verify. `seq` is the first bad event."""

    code = "audit_broken"
    exit_code = 5
    http_status = 500

    def __init__(self, seq: int, message: str):
        self.seq = seq
        super().__init__(message)


class DeliveryIncomplete(DewError):
    """A release is not delivered as recorded (a missing or changed file, a hand-off that never
    started, a stray staging file); `dew repair` completes what can be completed."""

    code = "delivery_incomplete"
    exit_code = 6
    http_status = 500


class NotAsReleased(DewError):
    """A file is not what dew released (`dew released verify`): its text, its label or its sidecar was
    changed or removed, its signature does not hold, it is another workspace's, or it was recalled."""

    code = "not_as_released"
    exit_code = 7
    http_status = 422


class StorageError(DewError):
    """The database or the workspace folder cannot be used."""

    code = "storage_error"
    http_status = 503
