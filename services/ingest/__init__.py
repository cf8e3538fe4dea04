"""ingest: the Segment-compatible HTTP tracking API. Produces `events.raw`."""
