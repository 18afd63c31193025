"""End-to-end harness: Apache Kafka (KRaft) + Kafka Connect with the deployed Debezium
plugins, and a source and a sink PostgreSQL, all on loopback."""
