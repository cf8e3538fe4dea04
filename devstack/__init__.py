"""The local stack for development and tests: a real Kafka-protocol broker, a real PostgreSQL
and the four services as processes. Not shipped to production (see deploy/)."""
