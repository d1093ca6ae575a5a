"""kefu wire protocol: pure data, no I/O (see PROTOCOL.md)."""
from .errors import KefuError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, TooLarge, ErrorCode, CloseCode
from .codec import Codec, JSON, MSGPACK, CODECS, SUBPROTOCOLS, decode_request, Envelope

__all__ = ["KefuError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "RateLimited",
           "TooLarge", "ErrorCode", "CloseCode", "Codec", "JSON", "MSGPACK", "CODECS", "SUBPROTOCOLS",
           "decode_request", "Envelope"]
