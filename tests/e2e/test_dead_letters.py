"""`sink: {dead_letter_queue: true}` on the real engine: a poison record on a CDC topic
lands in the sink's dead-letter topic, with the reason in its headers, and the sink
goes on writing the changes after it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import running_pipelines
from .reconcile import Expectation, wait_equal
from .scenarios import E2E_SINK, PG_SERVER_BLOCK, write_config
from .stack import Stack

pytestmark = pytest.mark.e2e

GROUPS = f"""\
environments:
  nonprod:
    topics: {{replication_factor: 3}}
{E2E_SINK}      dead_letter_queue: true
server_groups:
  - name: e2edlq
    server_group_type: db-per-tenant
    service: e2edlq
    server: {PG_SERVER_BLOCK}
    databases:
      - {{name: e2e_dlq_a, customer: a}}
"""
SERVICE = """\
service: e2edlq
server_group: e2edlq
source:
  type: postgres
  tables:
    - {schema: public, name: items, primary_key: id}
"""
EXPECT = [Expectation("e2edlq", "e2e_dlq_a", "public.items", "e2edlq", "a.items", ("id",))]
POISON = b"this is not JSON {"


@pytest.fixture(scope="module")
def running(shared_stack: Stack, pg_server: localpg.LocalPostgres,
            sink_pg: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[list[connect.GeneratedConnector]]:
    root = write_config(tmp_path_factory.mktemp("dlq") / "repo", groups=GROUPS,
                        services={"e2edlq": SERVICE})
    ddl = ("CREATE TABLE public.items (id int PRIMARY KEY, label text);"
           "INSERT INTO public.items SELECT g, 'seed' FROM generate_series(1, 10) g;")
    with running_pipelines(shared_stack, pg_server, sink_pg, roots=[root],
                           ddl={"e2e_dlq_a": ddl}, sink_dbs=["e2edlq"], sink_ddl={}) as running:
        yield running.connectors


def dead_letters(bootstrap: str, topic: str, timeout: float = 60.0) -> list[
        tuple[bytes | None, dict[str, bytes]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[tuple[bytes | None, dict[str, bytes]]] = []
        deadline = time.monotonic() + timeout
        while not out and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            headers: dict[str, bytes] = {}
            for pair in message.headers() or []:
                name, raw = pair[0], pair[1]
                headers[str(name)] = raw if isinstance(raw, bytes) else str(raw or "").encode()
            value = message.value()
            out.append((value if isinstance(value, bytes) else None, headers))
        return out
    finally:
        consumer.close()


def test_a_poison_record_goes_to_the_dead_letter_topic_and_the_sink_goes_on(
        running: list[connect.GeneratedConnector], shared_stack: Stack,
        pg_server: localpg.LocalPostgres, sink_pg: localpg.LocalPostgres) -> None:
    sink = next(c for c in running if c.name.startswith("sink-"))
    topic = sink.config["topics"]
    dead_letter_topic = sink.config["errors.deadletterqueue.topic.name"]
    assert dead_letter_topic == "cdc-dlq.sink-e2edlq-a"
    wait_equal(pg_server, sink_pg, EXPECT, lag=lambda: 0, timeout=90, what="the snapshot")

    producer = Producer({"bootstrap.servers": shared_stack.bootstrap})
    # a well-formed key (JsonConverter with schemas), a value that is no JSON at all
    key = (b'{"schema": {"type": "struct", "optional": false, "fields": [{"field": "id", '
           b'"type": "int32", "optional": false}]}, "payload": {"id": 999}}')
    producer.produce(topic, key=key, value=POISON)
    assert producer.flush(30) == 0
    pl.execute(pg_server, "e2e_dlq_a",
               "INSERT INTO public.items SELECT g, 'after' FROM generate_series(11, 20) g",
               "UPDATE public.items SET label = 'changed' WHERE id = 1")
    # the changes after the poison record arrive: the sink went on
    wait_equal(pg_server, sink_pg, EXPECT, lag=lambda: 0, timeout=90, what="past the poison")
    status = shared_stack.status(sink.name) or {}
    assert [t["state"] for t in status.get("tasks", [])] == ["RUNNING"], status

    found = dead_letters(shared_stack.bootstrap, dead_letter_topic)
    assert len(found) == 1, found
    value, headers = found[0]
    assert value == POISON
    assert headers["__connect.errors.topic"] == topic.encode()
    assert b"DataException" in headers["__connect.errors.exception.class.name"]
    assert headers["__connect.errors.stage"] == b"VALUE_CONVERTER"
