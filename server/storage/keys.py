"""Every Redis key name, built in one place.

All keys of one seller carry the hash tag ``{seller}``, so each seller's atomic scripts touch one
Redis Cluster slot. Node-level bookkeeping (heartbeats) is global and touched only by single-key
commands. Seller and member names are validated ([A-Za-z0-9_.-]) before they reach here.
"""
from __future__ import annotations

P = "kefu"

# global (single-key operations only)
SECRET = f"{P}:secret"
SELLERS = f"{P}:sellers"
NODES = f"{P}:nodes"                       # zset node -> last heartbeat (ms)
DUE = f"{P}:due"                           # zset "seller\0member" -> offline deadline (ms)


def node_sellers(node: str) -> str:
    return f"{P}:node:{node}:sellers"      # sellers with connections on that node (for reaping)


class SellerKeys:
    """Keys of one seller. ``k = SellerKeys("acme"); k.member("bob")`` -> ``kefu:{acme}:m:bob``."""

    __slots__ = ("s", "b")

    def __init__(self, seller: str) -> None:
        self.s = seller
        self.b = f"{P}:{{{seller}}}"

    # accounts
    @property
    def seller(self) -> str: return f"{self.b}:seller"            # hash: main account, quota, policy
    @property
    def members(self) -> str: return f"{self.b}:members"          # set of member ids (incl. main)
    def member(self, m: str) -> str: return f"{self.b}:m:{m}"     # hash: member record
    @property
    def groups(self) -> str: return f"{self.b}:groups"            # hash group -> display name
    def group_members(self, g: str) -> str: return f"{self.b}:g:{g}:members"
    @property
    def stores(self) -> str: return f"{self.b}:stores"            # hash store -> display name
    def store(self, st: str) -> str: return f"{self.b}:st:{st}"   # hash: name, secret, groups
    @property
    def names(self) -> str: return f"{self.b}:names"              # hash member -> display name
    def login_failures(self, m: str) -> str: return f"{self.b}:loginfail:{m}"  # counter, expiring

    # presence and routing (dispatch.lua reads these)
    @property
    def status(self) -> str: return f"{self.b}:status"            # hash member -> online|idle|offline
    @property
    def want(self) -> str: return f"{self.b}:want"                # hash member -> online|idle (the toggle)
    @property
    def conns(self) -> str: return f"{self.b}:conns"              # zset(lex) "member\0node\0conn"
    def node_conns(self, node: str) -> str: return f"{self.b}:nconns:{node}"  # set "member\0conn"
    @property
    def route(self) -> str: return f"{self.b}:route"              # hash member -> ",q1,q2," queues it may take
    @property
    def cap(self) -> str: return f"{self.b}:cap"                  # hash member -> capacity (R13)
    @property
    def load(self) -> str: return f"{self.b}:load"                # hash member -> active conversations
    @property
    def lastassign(self) -> str: return f"{self.b}:lastassign"    # hash member -> ms of last assignment
    @property
    def sticky(self) -> str: return f"{self.b}:sticky"            # hash buyer -> "member|ms" (R12.2)
    @property
    def held(self) -> str: return f"{self.b}:held"                # zset(lex) "member\0conv": active chats
    def queue(self, q: str) -> str: return f"{self.b}:q:{q}"      # zset conv -> enqueue order
    @property
    def qver(self) -> str: return f"{self.b}:qver"                # hash queue -> version (position events)
    @property
    def assignlog(self) -> str: return f"{self.b}:assignlog"      # stream of every assignment (audit)
    @property
    def wo_handlers(self) -> str: return f"{self.b}:wohandler"    # hash buyer -> member (open work order)

    # conversations
    @property
    def convs(self) -> str: return f"{self.b}:convs"              # zset conv -> created ms (stats index)
    def conv(self, c: str) -> str: return f"{self.b}:c:{c}"       # hash: conversation record
    def log(self, c: str) -> str: return f"{self.b}:c:{c}:log"    # stream: messages, id "<seq>-0"
    def cids(self, c: str) -> str: return f"{self.b}:c:{c}:cids"  # hash client id -> seq (idempotency)
    def transfers(self, c: str) -> str: return f"{self.b}:c:{c}:xfer"   # list of transfer records (json)
    def open_conv(self, buyer: str, store: str) -> str: return f"{self.b}:open:{store}:{buyer}"
    def closed_of(self, m: str) -> str: return f"{self.b}:m:{m}:closed"  # zset conv -> closed_at
    def buyer_convs(self, buyer: str) -> str: return f"{self.b}:b:{buyer}:convs"  # zset conv -> created
    def internal(self, a: str, b: str) -> str:
        x, y = sorted((a, b))
        return f"{self.b}:int:{x}:{y}"                            # string: internal conv id
    def internals_of(self, m: str) -> str: return f"{self.b}:m:{m}:int"  # set of internal conv ids

    # work orders
    @property
    def wo_seq(self) -> str: return f"{self.b}:woseq"
    def wo(self, w: str) -> str: return f"{self.b}:wo:{w}"
    def wo_hist(self, w: str) -> str: return f"{self.b}:wo:{w}:hist"
    @property
    def wo_all(self) -> str: return f"{self.b}:wo:all"            # zset wo -> created ms
    # lists and counts (R23): every index below scores a work order by its number, for paging
    @property
    def wo_ids(self) -> str: return f"{self.b}:woi:all"           # zset wo -> number: every work order
    def wo_created(self, m: str) -> str: return f"{self.b}:woi:c:{m}"   # zset: created by member m
    def wo_box(self, h: str) -> str: return f"{self.b}:woi:h:{h}"       # zset: handler h ("m:x" | "g:y")
    def wo_todo(self, h: str) -> str: return f"{self.b}:woi:t:{h}"      # zset: h's open/in_progress ones
    def wo_buyer(self, b: str) -> str: return f"{self.b}:woi:b:{b}"     # zset: the buyer's work orders
    def wo_buyer_open(self, b: str) -> str: return f"{self.b}:woi:bo:{b}"  # hash wo -> "member|ms" (routing)
    @property
    def wo_types(self) -> str: return f"{self.b}:wotypes"         # list: the seller's work-order types

    # metrics (R26)
    @property
    def events(self) -> str: return f"{self.b}:events"            # stream of service events for stats

    # pub/sub channels
    @property
    def ch_prefix(self) -> str: return f"{self.b}:ch:"              # scripts build channels from it
    def ch_member(self, m: str) -> str: return f"{self.b}:ch:m:{m}"
    def ch_buyer(self, b: str) -> str: return f"{self.b}:ch:b:{b}"
    @property
    def ch_presence(self) -> str: return f"{self.b}:ch:presence"  # members + dashboards (R11)
    @property
    def ch_dash(self) -> str: return f"{self.b}:ch:dash"          # dashboards: load, queues
    def ch_queue(self, q: str) -> str: return f"{self.b}:ch:q:{q}"  # buyers waiting in q


def seller_of_channel(ch: str) -> str:
    """``kefu:{acme}:ch:...`` -> ``acme``."""
    return ch[ch.index("{") + 1: ch.index("}")]
