"""The four leadflow services. Each is its own process (`python -m services.<name>`) and talks to
the others only through Kafka topics; none imports another."""
