"""One exception tree with stable codes. The code is what clients match on; the message is for humans.

Every code is listed in PROTOCOL.md. Subclasses group codes by family so server code can
``except Forbidden`` without caring which exact rule refused.
"""
from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    # malformed input (the connection stays usable)
    BAD_FRAME = "bad_frame"              # not valid JSON/msgpack, or not an envelope
    UNKNOWN_TYPE = "unknown_type"        # envelope type is not a known request
    INVALID = "invalid"                  # a field is missing, of the wrong type or out of range
    TOO_LARGE = "too_large"              # a field or frame exceeds its limit
    # authentication
    UNAUTHORIZED = "unauthorized"        # no/invalid token, or request before auth
    TOKEN_EXPIRED = "token_expired"
    BAD_CREDENTIALS = "bad_credentials"  # login: unknown account or wrong password
    OTP_REQUIRED = "otp_required"        # login: the seller requires a one-time code
    BAD_OTP = "bad_otp"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_EXPIRED = "account_expired"
    # permission / tenancy
    FORBIDDEN = "forbidden"              # the caller lacks the permission for this action
    NOT_FOUND = "not_found"              # unknown, or belongs to another seller (never "exists elsewhere")
    # state conflicts
    CONFLICT = "conflict"                # generic: the thing changed meanwhile
    EXISTS = "exists"
    QUOTA_EXCEEDED = "quota_exceeded"    # R1 sub-account quota
    NAME_IMMUTABLE = "name_immutable"    # R1
    CANNOT_SUSPEND_MAIN = "cannot_suspend_main"  # R8
    NOT_HOLDER = "not_holder"            # you do not hold this conversation
    CONV_CLOSED = "conv_closed"
    CONV_NOT_CLOSED = "conv_not_closed"
    SELF_TRANSFER = "self_transfer"
    TARGET_IDLE = "target_idle"          # R18: transfer only to an online member
    TARGET_OFFLINE = "target_offline"
    TARGET_FULL = "target_full"          # R20: recipient at capacity
    TARGET_CANNOT_SERVE = "target_cannot_serve"
    AT_CAPACITY = "at_capacity"          # restart refused: you are at capacity
    ILLEGAL_TRANSITION = "illegal_transition"  # work orders R24
    # abuse / load
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes. 40xx: do not reconnect with the same credentials; 41xx: reconnect and resume."""
    NORMAL = 1000
    GOING_AWAY = 1001            # server shutting down: reconnect (to another node) and resume
    POLICY = 1008
    FRAME_TOO_BIG = 1009
    AUTH_FAILED = 4001           # bad/expired token or no auth within the deadline
    KICKED = 4003                # account disabled, expired or logged out by the seller
    FLOOD = 4008                 # too many frames/bad frames: abuse
    SLOW_CONSUMER = 4100         # outbound queue overflowed: reconnect and resume from your last seq
    OVERLOADED = 4101            # node overloaded: reconnect later, elsewhere


class KefuError(Exception):
    """Root of every error a client can see. ``code`` is stable; ``message`` is for humans."""
    default_code = ErrorCode.INTERNAL

    def __init__(self, code: ErrorCode | str | None = None, message: str = "", **detail: object) -> None:
        self.code = ErrorCode(code) if code is not None else self.default_code
        self.message = message or self.code.value.replace("_", " ")
        self.detail = detail
        super().__init__(f"{self.code.value}: {self.message}")

    def to_payload(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code.value, "message": self.message}
        if self.detail:
            out["detail"] = self.detail
        return out


class BadRequest(KefuError):
    default_code = ErrorCode.INVALID


class TooLarge(BadRequest):
    default_code = ErrorCode.TOO_LARGE


class Unauthorized(KefuError):
    default_code = ErrorCode.UNAUTHORIZED


class Forbidden(KefuError):
    default_code = ErrorCode.FORBIDDEN


class NotFound(KefuError):
    default_code = ErrorCode.NOT_FOUND


class Conflict(KefuError):
    default_code = ErrorCode.CONFLICT


class RateLimited(KefuError):
    default_code = ErrorCode.RATE_LIMITED


FAMILY: dict[ErrorCode, type[KefuError]] = {
    **{c: BadRequest for c in (ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_TYPE, ErrorCode.INVALID)},
    ErrorCode.TOO_LARGE: TooLarge,
    **{c: Unauthorized for c in (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, ErrorCode.BAD_CREDENTIALS,
                                  ErrorCode.OTP_REQUIRED, ErrorCode.BAD_OTP, ErrorCode.ACCOUNT_DISABLED,
                                  ErrorCode.ACCOUNT_EXPIRED)},
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.OVERLOADED: RateLimited,
}


def error(code: ErrorCode | str, message: str = "", **detail: object) -> KefuError:
    """Build the right subclass for a code (used when a Lua script returns an error code)."""
    c = ErrorCode(code)
    return FAMILY.get(c, Conflict if c != ErrorCode.INTERNAL else KefuError)(c, message, **detail)
