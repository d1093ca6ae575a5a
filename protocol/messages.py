"""Every request a client may send, as a typed struct, keyed by its envelope ``type``.

Decoding validates types and limits in one C pass (msgspec); past ``codec.decode_request``
nothing handles raw dicts. Events pushed by the server are described in PROTOCOL.md and
listed in ``EVENTS`` (their field names) for tests and clients.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import msgspec
from msgspec import Meta, Struct

# Limits (PROTOCOL.md §Limits). Frames above MAX_FRAME bytes close the socket (1009).
MAX_FRAME = 64 * 1024
MAX_TEXT = 4000
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
Name = Annotated[str, Meta(min_length=1, max_length=64)]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
Reason = Annotated[str, Meta(max_length=200)]
Seq = Annotated[int, Meta(ge=0, le=2**53)]
Limit = Annotated[int, Meta(ge=1, le=200)]
Token = Annotated[str, Meta(min_length=1, max_length=4096)]
Status = Literal["online", "idle"]


class Request(Struct, kw_only=True, omit_defaults=True):
    """Base of every request payload."""


class Auth(Request):
    token: Token
    cursors: dict[Id, Seq] = {}          # conv -> last seq seen, to resume (R17)
    stores: Optional[list[Id]] = None    # members: the stores to serve now (R4); None = all allowed
    status: Optional[Status] = None      # members: initial status; default: the last one chosen
    app: Literal["console", "dashboard"] = "console"  # "dashboard": watch only, no presence, no chats
    echo: bool = True                    # False: your own messages come back in the send reply only


class Ping(Request):
    pass


class Send(Request):
    cid: Id                               # client id: makes a retry idempotent (R17)
    text: Text
    conv: Optional[Id] = None             # buyers may omit it: their open conversation at the store
    to: Optional[Id] = None               # buyers: address a member by name when opening (R12.1)


class History(Request):
    conv: Id
    before: Optional[Seq] = None
    after: Optional[Seq] = None
    limit: Limit = 50


class Read(Request):
    conv: Id
    seq: Seq


class ConvOpen(Request):
    """Buyer: open (or get) the conversation at the token's store, optionally addressing a member."""
    to: Optional[Id] = None


class ConvList(Request):
    state: Literal["active", "closed", "queued"] = "active"
    before: Optional[float] = None       # closed: page by closed_at (ms) strictly before this
    limit: Limit = 50


class ConvRef(Request):
    conv: Id


class ConvGet(ConvRef):
    pass


class ConvClose(ConvRef):
    pass


class ConvRestart(ConvRef):
    pass


class ConvExplain(ConvRef):
    pass


class ConvTransfers(ConvRef):
    pass


class ConvLeave(Request):
    conv: Optional[Id] = None


class ConvTransfer(Request):
    conv: Id
    to_member: Optional[Id] = None
    to_group: Optional[Id] = None
    reason: Reason = ""


class StatusSet(Request):
    status: Status
    member: Optional[Id] = None           # R9: a supervisor sets another member's status


class StatusToggle(Request):
    member: Optional[Id] = None


class Contacts(Request):
    pass


class InternalOpen(Request):
    member: Id


class DashSnapshot(Request):
    pass


WoType = Annotated[str, Meta(min_length=1, max_length=32)]
WoStatus = Literal["open", "in_progress", "done", "cancelled"]
OrderNo = Annotated[str, Meta(min_length=1, max_length=64)]


class WoCreate(Request):
    """R22: from a conversation (buyer and store come from it) or for a buyer (and an order number)."""
    type: WoType                          # one of the seller's types (GET /api/admin/work-orders/types)
    content: Text
    conv: Optional[Id] = None
    buyer: Optional[Id] = None
    store: Optional[Id] = None
    order: Optional[OrderNo] = None
    handler_member: Optional[Id] = None   # exactly one of handler_member, handler_group
    handler_group: Optional[Id] = None


class WoList(Request):
    box: Literal["created", "assigned", "pending", "all"] = "assigned"
    status: Optional[WoStatus] = None
    type: Optional[WoType] = None
    store: Optional[Id] = None
    handler: Optional[Id] = None          # a member or group id (either handler field matches)
    buyer: Optional[Id] = None            # the buyer's work orders, e.g. beside its chat
    before: Optional[Id] = None           # paging: the ``next`` of the previous page
    limit: Limit = 50


class WoGet(Request):
    wo: Id


class WoUpdate(Request):
    wo: Id
    status: Optional[WoStatus] = None
    handler_member: Optional[Id] = None
    handler_group: Optional[Id] = None
    comment: Optional[Text] = None


class WoCounts(Request):
    pass


class WoTypes(Request):
    pass


REQUESTS: dict[str, type[Request]] = {
    "auth": Auth,
    "ping": Ping,
    "send": Send,
    "history": History,
    "read": Read,
    "conv.open": ConvOpen,
    "conv.list": ConvList,
    "conv.get": ConvGet,
    "conv.close": ConvClose,
    "conv.restart": ConvRestart,
    "conv.transfer": ConvTransfer,
    "conv.explain": ConvExplain,
    "conv.transfers": ConvTransfers,
    "conv.leave": ConvLeave,
    "status.set": StatusSet,
    "status.toggle": StatusToggle,
    "contacts": Contacts,
    "internal.open": InternalOpen,
    "dash.snapshot": DashSnapshot,
    "wo.create": WoCreate,
    "wo.list": WoList,
    "wo.get": WoGet,
    "wo.update": WoUpdate,
    "wo.counts": WoCounts,
    "wo.types": WoTypes,
}

# Server -> client events and their fields (documented in PROTOCOL.md).
EVENTS: dict[str, tuple[str, ...]] = {
    "msg": ("conv", "seq", "kind", "from", "name", "text", "ts", "cid", "store"),
    "conv.assigned": ("conv", "store", "buyer", "reason", "candidates", "seq", "queue", "transfer"),
    "conv.removed": ("conv", "reason", "to"),
    "conv.state": ("conv", "state", "agent", "position"),
    "queue.position": ("conv", "position"),
    "presence": ("member", "status", "name"),
    "load": ("member", "load", "cap"),
    "queue": ("queue", "length", "oldest"),
    "wo": ("wo", "action", "by", "changes", "type", "status", "handler", "handler_member", "handler_group",
           "creator", "buyer", "store", "order", "conv", "content", "created", "updated"),
    "internal": ("conv", "with"),
}

ENVELOPE_KINDS = ("ok", "error")


def is_known(type_: str) -> bool:
    return type_ in REQUESTS


def struct_fields(cls: type[Request]) -> tuple[str, ...]:
    return cls.__struct_fields__


__all__ = ["REQUESTS", "EVENTS", "Request", "MAX_FRAME", "MAX_TEXT", "msgspec"]
