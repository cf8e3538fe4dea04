"""enrich: identity resolution and normalisation. Consumes `events.raw`, produces `events.enriched`."""
