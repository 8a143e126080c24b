"""The fixed JSON bodies the backends return: about 1 KB, nested, and a candidate that differs in one field."""

from __future__ import annotations

import json
from dataclasses import dataclass


def _document(author: str) -> dict:
    return {
        "id": 48213,
        "kind": "order",
        "status": "shipped",
        "author": author,
        "created": "2024-03-18T09:12:44Z",
        "currency": "EUR",
        "total": 184.95,
        "customer": {
            "id": 90211, "name": "Ada Lovelace", "email": "ada@example.org",
            "address": {"street": "12 Analytical Row", "city": "London", "postcode": "N1 9GU",
                        "country": "GB"},
            "tier": "gold", "since": "2019-11-02",
        },
        "lines": [
            {"sku": "KB-104", "title": "Mechanical keyboard", "qty": 1, "price": 89.0, "tags": ["input", "usb"]},
            {"sku": "MS-220", "title": "Wireless mouse", "qty": 2, "price": 24.5, "tags": ["input", "bluetooth"]},
            {"sku": "CB-003", "title": "USB-C cable 2 m", "qty": 3, "price": 6.0, "tags": ["cable"]},
            {"sku": "PD-771", "title": "Desk pad, felt", "qty": 1, "price": 28.95, "tags": ["desk", "felt"]},
        ],
        "shipping": {"carrier": "parcelco", "tracking": "PC7781230041GB", "eta_days": 2,
                     "insured": True, "weight_kg": 1.84},
        "flags": {"gift": False, "priority": True, "fragile": False},
        "notes": "Leave with the neighbour at number 14 if nobody answers the door.",
        "history": [
            {"at": "2024-03-18T09:12:44Z", "event": "created"},
            {"at": "2024-03-18T09:40:02Z", "event": "paid"},
            {"at": "2024-03-19T07:05:51Z", "event": "shipped"},
        ],
    }


PRIMARY_AUTHOR = "Ada Lovelace"
CANDIDATE_AUTHOR = "Ada Lovelace, v2"


def primary_body() -> str:
    return json.dumps(_document(PRIMARY_AUTHOR), separators=(",", ":"))


def candidate_body() -> str:
    """Same document, one field changed: the comparison has to take the slow, deepdiff path."""
    return json.dumps(_document(CANDIDATE_AUTHOR), separators=(",", ":"))


def nginx_literal(body: str) -> str:
    """The body as a single-quoted nginx string; nginx would expand `$` and unescape `\\`."""
    for bad in ("'", "$", "\\", "\n"):
        if bad in body:
            raise ValueError(f"body holds {bad!r}, which an nginx `return` literal cannot carry as is")
    return f"'{body}'"


# (g) the realistic mix --------------------------------------------------------------------

MIX_SMALLEST = 200
MIX_LARGEST = 50 * 1024
MIX_HUGE = 1024 * 1024


@dataclass(frozen=True)
class MixDocument:
    name: str        # the file name, served under /mix/
    primary: bytes   # what the primary and the secondary serve
    candidate: bytes  # what the candidate serves: the same bytes, or one field changed

    @property
    def differs(self) -> bool:
        return self.primary != self.candidate


def _sized(size: int, seed: int, author: str) -> bytes:
    """A JSON document of about `size` bytes: an order whose `lines` grow until it is big enough."""
    # ~80 bytes to start with, so the smallest documents can be 200 B
    doc = {"id": seed, "kind": "order", "status": "shipped", "author": author, "lines": []}
    base = len(json.dumps(doc, separators=(",", ":")))
    line = 0
    while base < size:
        item = {"sku": f"SK-{seed:03d}-{line:05d}", "title": f"Item {line} of order {seed}",
                "qty": 1 + line % 7, "price": round(3.5 + (line * 7919 % 1000) / 10, 2),
                "tags": ["mix", "bench"][: 1 + line % 2]}
        doc["lines"].append(item)
        base += len(json.dumps(item, separators=(",", ":"))) + 1
        line += 1
    return json.dumps(doc, separators=(",", ":")).encode()


def mix_documents(count: int = 100) -> list[MixDocument]:
    """`count` documents requested in turn: sizes spread evenly on a log scale from 200 B to
    50 KB, except one in a hundred of 1 MB; one in ten differs on the candidate (the
    `author` field, as in (d)). The 1 MB ones are identical: passed through, not diffed."""
    out = []
    for i in range(count):
        if i % 100 == 0:
            size = MIX_HUGE
        else:
            size = round(MIX_SMALLEST * (MIX_LARGEST / MIX_SMALLEST) ** ((i % 100) / 99))
        primary = _sized(size, i, PRIMARY_AUTHOR)
        candidate = _sized(size, i, CANDIDATE_AUTHOR) if i % 10 == 5 else primary
        out.append(MixDocument(f"{i}.json", primary, candidate))
    return out
