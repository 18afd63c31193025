"""Read what connectors wrote: a small consumer over confluent-kafka (librdkafka).

No consumer group is joined: partitions are assigned by hand from the beginning, so
nothing waits for a group join and nothing is committed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

#: librdkafka settings for a cluster on loopback
_BASE_CONFIG: dict[str, str | int | float | bool] = {
    "broker.address.family": "v4",
    # poll often: tests wait for single records
    "fetch.wait.max.ms": 20,
    "socket.connection.setup.timeout.ms": 5000,
    "topic.metadata.refresh.interval.ms": 500,
    "log_level": 3,
}


@dataclass(frozen=True)
class Record:
    """One Kafka record with its key and value parsed as JSON (None for null)."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    timestamp_ms: int | None = None

    @property
    def key_payload(self) -> Any:
        """The key's ``payload`` when it is a JsonConverter envelope, else the key."""
        return _payload(self.key)

    @property
    def value_payload(self) -> Any:
        """The value's ``payload`` when it is a JsonConverter envelope, else the value."""
        return _payload(self.value)

    @property
    def op(self) -> str | None:
        """Debezium's ``op`` (``r``, ``c``, ``u``, ``d``); None for a tombstone."""
        payload = self.value_payload
        if isinstance(payload, Mapping):
            op = payload.get("op")
            return None if op is None else str(op)
        return None


def _payload(doc: Any) -> Any:
    if isinstance(doc, Mapping) and set(doc) == {"schema", "payload"}:
        return doc["payload"]
    return doc


def _decode(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def list_topics(bootstrap: str, *, timeout: float = 10.0) -> set[str]:
    """Names of the broker's topics (internal ones included)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **_BASE_CONFIG})
    metadata = admin.list_topics(timeout=timeout)
    return {name for name, topic in metadata.topics.items() if topic.error is None}


def wait_for_topics(bootstrap: str, topics: Iterable[str], *, timeout: float = 30.0) -> None:
    """Wait until every topic exists (a source connector creates its topics lazily)."""
    wanted = set(topics)
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - list_topics(bootstrap, timeout=max(1.0, deadline - time.monotonic()))
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics {sorted(missing)} not created within {timeout:.0f}s")
        time.sleep(0.1)


def consume(
    bootstrap: str,
    topics: Iterable[str],
    *,
    until: Callable[[list[Record]], bool],
    timeout: float = 30.0,
) -> list[Record]:
    """Read ``topics`` from the beginning until ``until(records so far)`` is true.

    Waits for the topics to exist first. Raises :class:`TimeoutError` (listing what
    was read) when ``until`` is still false at the deadline.
    """
    topic_list = sorted(set(topics))
    deadline = time.monotonic() + timeout
    wait_for_topics(bootstrap, topic_list, timeout=timeout)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # required by librdkafka, never joined: partitions are assigned by hand
            "group.id": "cdc-e2e-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            **_BASE_CONFIG,
        }
    )
    records: list[Record] = []
    try:
        metadata = consumer.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        assignment = [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in topic_list
            for partition in sorted(metadata.topics[topic].partitions)
        ]
        consumer.assign(assignment)
        while not until(records):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                summary = [(r.topic, r.offset, r.key_payload, r.op) for r in records]
                raise TimeoutError(
                    f"condition not met within {timeout:.0f}s reading {topic_list}; "
                    f"{len(records)} records read: {summary}"
                )
            for message in consumer.consume(num_messages=500, timeout=min(0.2, remaining)):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                topic = message.topic()
                partition = message.partition()
                offset = message.offset()
                assert topic is not None
                assert partition is not None
                assert offset is not None
                _kind, stamp = message.timestamp()
                records.append(
                    Record(
                        topic=topic,
                        partition=partition,
                        offset=offset,
                        key=_decode(message.key()),
                        value=_decode(message.value()),
                        timestamp_ms=stamp if stamp >= 0 else None,
                    )
                )
    finally:
        consumer.close()
    log.debug("read %d records from %s", len(records), topic_list)
    return records


def group_lag(bootstrap: str, group: str, topics: Iterable[str], *,
              timeout: float = 10.0) -> int:
    """Records on ``topics`` that consumer group ``group`` has not committed yet (a
    topic that does not exist yet holds none)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **_BASE_CONFIG})
    metadata = admin.list_topics(timeout=timeout)
    partitions = [TopicPartition(t, p) for t in sorted(set(topics)) if t in metadata.topics
                  for p in sorted(metadata.topics[t].partitions)]
    if not partitions:
        return 0
    request = ConsumerGroupTopicPartitions(group, partitions)
    future = admin.list_consumer_group_offsets([request])[group]
    answer = future.result(timeout)
    committed = {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cdc-e2e-lag",
                         "enable.auto.commit": False, **_BASE_CONFIG})
    try:
        lag = 0
        for tp in partitions:
            _low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            done = committed.get((tp.topic, tp.partition), -1)
            lag += high - max(done, 0)
        return lag
    finally:
        consumer.close()


def read_all(bootstrap: str, topics: Iterable[str], *, timeout: float = 30.0) -> list[Record]:
    """Every record on ``topics`` up to their end offsets as of now."""
    wanted = sorted(set(topics))
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "cdc-e2e-ends",
                      "enable.auto.commit": False, **_BASE_CONFIG})
    try:
        metadata = probe.list_topics(timeout=timeout)
        ends = {(t, p): probe.get_watermark_offsets(TopicPartition(t, p), timeout=timeout)[1]
                for t in wanted if t in metadata.topics for p in metadata.topics[t].partitions}
    finally:
        probe.close()

    def done(records: list[Record]) -> bool:
        last: dict[tuple[str, int], int] = {}
        for r in records:
            last[r.topic, r.partition] = max(last.get((r.topic, r.partition), -1), r.offset)
        return all(end == 0 or last.get(key, -1) >= end - 1 for key, end in ends.items())

    return consume(bootstrap, [t for t, _p in ends], until=done, timeout=timeout)
