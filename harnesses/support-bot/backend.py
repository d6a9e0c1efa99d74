"""The shop's backend as the support agent sees it: orders API, identity, refunds.

NOT part of the editable harness: this stands for services another team owns. Its
failure modes are facts of the environment the agent must live with:

* the orders API sometimes does not answer in time (`TimeoutError`), seeded so that a
  trial is reproducible;
* refunds over $100 need a verified identity first (`PolicyViolation`);
* guest orders have no account, so there is no identity to verify (`IdentityError`);
* gift-card payments cannot be refunded automatically (`ValueError`).

Everything runs in memory on a copy of `data/orders.json`; nothing is written back.
"""

import copy
import hashlib
import json
import random
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "orders.json"

ORDERS_API_TIMEOUT_S = 5
ORDERS_API_TIMEOUT_RATE = 0.35
REFUND_VERIFY_THRESHOLD = 100.0
CANCELLABLE = ("pending", "processing")


class OrderNotFound(LookupError):
    pass


class PolicyViolation(Exception):
    pass


class IdentityError(Exception):
    pass


def canonical_order_id(text):
    """`#W1234567`, `W1234567`, `w 1234567` or `1234567` -> `#W1234567` (None if not an id)."""
    m = re.fullmatch(r"\s*#?\s*[Ww]?\s*-?\s*(\d{7})\s*", str(text))
    return f"#W{m.group(1)}" if m else None


def _unit(*parts):
    """A uniform number in [0, 1) derived from `parts` (stable across processes)."""
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


class Backend:
    """One customer session's view of the shop. `infra_key` seeds the network weather."""

    def __init__(self, infra_key="", data_path=DATA):
        with open(data_path, encoding="utf-8") as f:
            data = json.load(f)
        self.users = {u["user_id"]: u for u in data["users"]}
        self.orders = {o["order_id"]: copy.deepcopy(o) for o in data["orders"]}
        self.infra_key = infra_key
        self.verified = set()
        self._calls = {}
        # Simulated latency of the last call, in milliseconds (the agent's clock reads it).
        self.last_latency_ms = 0

    def _latency(self, *parts, lo=40, hi=260):
        self.last_latency_ms = lo + int(_unit(self.infra_key, "latency", *parts) * (hi - lo))

    def _order(self, order_id):
        oid = canonical_order_id(order_id)
        if oid is None or oid not in self.orders:
            raise OrderNotFound(f"no order {order_id!s} in the orders database")
        return self.orders[oid]

    # --- orders API (remote, flaky) ----------------------------------------------------

    def get_order(self, order_id):
        """One request to the orders API. May time out (seeded by infra_key, id, call no.)."""
        oid = canonical_order_id(order_id)
        if oid not in self.orders:  # the API gateway knows every order id: unknown ids fail fast
            self._latency("get_order-404", order_id, lo=20, hi=60)
            raise OrderNotFound(f"no order {order_id!s} in the orders database")
        n = self._calls[order_id] = self._calls.get(order_id, 0) + 1
        if _unit(self.infra_key, "orders-api", order_id, n) < ORDERS_API_TIMEOUT_RATE:
            self.last_latency_ms = ORDERS_API_TIMEOUT_S * 1000
            raise TimeoutError(
                f"orders API did not answer within {ORDERS_API_TIMEOUT_S}s (order {order_id})"
            )
        self._latency("get_order", order_id, n)
        o = self._order(order_id)
        view = {k: o[k] for k in ("order_id", "status", "total", "payment_method", "placed_at")}
        view["account"] = o["user_id"] or "guest"
        view["items"] = [i["name"] for i in o["items"]]
        if o.get("tracking"):
            view["tracking"] = o["tracking"]
        view["shipping_address"] = o["shipping_address"]
        return view

    # --- account and payments (local services) -----------------------------------------

    def find_customer(self, user_id):
        self._latency("customer", user_id, lo=30, hi=120)
        u = self.users.get(user_id)
        if u is None:
            raise LookupError(f"no customer account {user_id}")
        n = sum(1 for o in self.orders.values() if o["user_id"] == user_id)
        return {"user_id": user_id, "name": u["name"], "email": u["email"], "orders": n}

    def verify_identity(self, order_id):
        self._latency("verify", order_id, lo=300, hi=900)
        o = self._order(order_id)
        if not o["user_id"]:
            raise IdentityError(f"guest order {o['order_id']} has no account to verify")
        self.verified.add(o["order_id"])
        return {"order_id": o["order_id"], "user_id": o["user_id"], "verified": True, "method": "email_code"}

    def issue_refund(self, order_id, amount=None):
        self._latency("refund", order_id, lo=120, hi=400)
        o = self._order(order_id)
        amount = round(float(o["total"] if amount is None else amount), 2)
        if amount <= 0 or amount > o["total"]:
            raise ValueError(f"refund amount {amount:.2f} is not between 0 and the order total")
        if amount > REFUND_VERIFY_THRESHOLD and o["order_id"] not in self.verified:
            raise PolicyViolation(
                f"refund over ${REFUND_VERIFY_THRESHOLD:.0f} requires identity verification (order {o['order_id']})"
            )
        if o["payment_method"] == "gift_card":
            raise ValueError("payment method 'gift_card' cannot be refunded automatically")
        o["refunded"] = round(o.get("refunded", 0) + amount, 2)
        return {"order_id": o["order_id"], "refunded": amount, "to": o["payment_method"], "eta_days": 5}

    def cancel_order(self, order_id):
        self._latency("cancel", order_id, lo=80, hi=300)
        o = self._order(order_id)
        if o["status"] not in CANCELLABLE:
            return {"order_id": o["order_id"], "cancelled": False, "reason": f"order is already {o['status']}"}
        o["status"] = "cancelled"
        return {"order_id": o["order_id"], "cancelled": True, "status": "cancelled"}

    def change_address(self, order_id, address):
        self._latency("address", order_id, lo=80, hi=300)
        o = self._order(order_id)
        if o["status"] not in CANCELLABLE:
            return {"order_id": o["order_id"], "changed": False, "reason": f"order is already {o['status']}"}
        o["shipping_address"] = address
        return {"order_id": o["order_id"], "changed": True, "shipping_address": address}
