"""How config names become Kubernetes names, SQL identifiers, slots and topics."""

from __future__ import annotations

import hashlib
import re

MAX_SLOT = 63  # PostgreSQL NAMEDATALEN - 1
MAX_K8S_NAME = 253
MAX_HOST = 253
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?")
_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def k8s(*parts: str) -> str:
    """`Customer_A` -> `customer-a`: a DNS-1123 friendly rendering of `parts`."""
    joined = "-".join(parts).lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", joined))


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None


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


def host_problem(host: str) -> str | None:
    """Why `host` is not a host name (RFC 1123), IPv4 or IPv6 address or a
    `${VAR}` placeholder; None when it is one. Nothing else may reach a JDBC URL."""
    import ipaddress  # checks only, not the hot path of generate

    if _PLACEHOLDER.fullmatch(host):
        return None
    if "${" in host:  # placeholders for parts of a name: the rest must make a name
        return host_problem(_PLACEHOLDER.sub("x", host)) if "${" not in _PLACEHOLDER.sub(
            "x", host) else "holds a '${' that is not a ${VAR} placeholder"
    bracketed = host.startswith("[") and host.endswith("]")
    inner = host[1:-1] if bracketed else host
    if bracketed or ":" in host:
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return ("is not a valid IPv6 address" if bracketed or host.count(":") > 1
                    else "holds a ':' (a port goes under 'port:')")
        return None if "%" not in inner else "must not name an IPv6 zone"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "is not a valid IPv4 address"
        return None
    if len(host) > MAX_HOST:
        return f"is longer than {MAX_HOST} characters"
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    for label in labels:
        if len(label) > 63 or _HOST_LABEL.fullmatch(label) is None:
            return ("is not a host name: each dot-separated part is 1-63 letters, digits "
                    "or '-', not starting or ending with '-'")
    if labels[-1].isdigit():
        return "is not a host name: its last part is all digits (like a malformed IPv4 address)"
    return None


def url_host(host: str) -> str:
    """`host` as it goes into a URL: an IPv6 address in brackets."""
    if ":" in host and not host.startswith("[") and not _PLACEHOLDER.fullmatch(host):
        return f"[{host}]"
    return host


def kafka_topic_key(topic: str) -> str:
    """Kafka refuses a topic whose name equals another's once '.' and '_' are
    taken as the same character (they collide in its metric names)."""
    return topic.replace(".", "_")
