"""The fixed JSON bodies the backends return: about 1 KB, nested, and a candidate that differs in one field."""

from __future__ import annotations

import json


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
