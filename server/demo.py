"""``kefu serve --demo``: a seller with two stores, groups 售前/售后 and a few members, to try in a minute."""
from __future__ import annotations

from typing import Any

from kefu.protocol.errors import Conflict

from .accounts import Accounts

SELLER = "demo"
PASSWORD = "demo1234"
MEMBERS: list[dict[str, Any]] = [
    {"member": "alice", "name": "Alice 小爱", "role": "agent", "groups": ["presales"], "capacity": 3},
    {"member": "bob", "name": "Bob 小波", "role": "agent", "groups": ["presales", "aftersales"], "capacity": 3},
    {"member": "carol", "name": "Carol 小凯", "role": "supervisor", "groups": ["aftersales"], "capacity": 5},
]


async def ensure_demo(accounts: Accounts) -> list[str]:
    """Create the demo data if missing; return the lines to print."""
    try:
        await accounts.create_seller(SELLER, PASSWORD, name="Demo 演示店铺", quota=10)
        await accounts.create_group(SELLER, "presales", "售前 Pre-sales")
        await accounts.create_group(SELLER, "aftersales", "售后 After-sales")
        await accounts.create_store(SELLER, "flagship", "旗舰店 Flagship", ["presales", "aftersales"])
        await accounts.create_store(SELLER, "outlet", "折扣店 Outlet", ["aftersales"])
        for m in MEMBERS:
            m = dict(m)
            await accounts.create_member(SELLER, m.pop("member"), PASSWORD, **m)
        await accounts.update_member(SELLER, SELLER, groups=["presales", "aftersales"])
        await accounts.recompute_all(SELLER)
    except Conflict:
        pass  # already there
    lines = [f"demo seller '{SELLER}' — every password: {PASSWORD}",
             f"  main account : {SELLER}"]
    lines += [f"  member       : {SELLER}:{m['member']:<6} {m['role']:<10} groups {','.join(m['groups'])}"
              for m in MEMBERS]
    lines.append("  stores       : flagship (售前+售后), outlet (售后)")
    return lines
