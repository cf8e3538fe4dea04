"""leadflow's shared package: topic contracts, settings, database, Kafka and the consumer runner.

Services import from here and never from each other (see docs/architecture.md, "Shape").
"""
