"""How config names become Kubernetes names, SQL identifiers, slots and topics."""

from __future__ import annotations

import hashlib
import re

MAX_SLOT = 63  # PostgreSQL NAMEDATALEN - 1
MAX_K8S_NAME = 253
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def k8s(*parts: str) -> str:
    """`Customer_A` -> `customer-a`: a DNS-1123 friendly rendering of `parts`."""
    joined = "-".join(parts).lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", joined))


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and _DNS_LABEL.match(name) is not None


def sql_ident(*parts: str) -> str:
    """`Acme-Corp` -> `acme_corp`: a lower-case identifier needing no quotes."""
    joined = "_".join(parts).lower()
    return re.sub(r"_{2,}", "_", re.sub(r"[^a-z0-9_]", "_", joined))


def slot_name(service: str, customer: str | None, environment: str) -> str:
    """A replication slot / publication name: `[a-z0-9_]`, at most 63 characters.

    Over-long names keep a readable head and end in a hash of the full name, so
    two long names never truncate to the same slot.
    """
    parts = ["cdc", service] + ([customer] if customer else []) + [environment]
    return bounded_identifier(sql_ident(*parts))


def bounded_identifier(name: str) -> str:
    """`name` if PostgreSQL keeps it whole (63 bytes), else a readable head and a hash of
    the whole, so two long names never shorten to the same identifier."""
    if len(name.encode()) <= MAX_SLOT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_SLOT - len(digest) - 1]}_{digest}"


def topic_prefix(service: str, customer: str | None) -> str:
    return f"cdc.{service}.{customer}" if customer else f"cdc.{service}"


def java_regex_literal(text: str) -> str:
    """Escape `text` so a Java regex matches it literally (names are [A-Za-z0-9_-])."""
    return re.sub(r"([.\\$^*+?()\[\]{}|])", r"\\\1", text)
