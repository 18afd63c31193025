"""End-to-end harness: Tansu broker + Kafka Connect worker (+ PostgreSQL) on loopback."""
