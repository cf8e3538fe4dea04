"""score: fit and behaviour scoring and the lifecycle. Consumes `events.enriched`, produces
`leads.scored` and `leads.lifecycle`."""
