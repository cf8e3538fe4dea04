"""sync: leadflow's decisions, delivered to CRMs over HTTP (signed webhooks).

Most CRMs and marketing tools cannot read Kafka. sync consumes `routing.sdr`, `routing.nurture`,
`routing.withdrawals`, `leads.lifecycle` and `privacy.erasures`, and POSTs each event to the
destinations that want it (`destinations`: a YAML file), signed the Standard Webhooks way
(`webhooks`), at least once, in order per lead.

How:
- The consumer only queues (`handler`): each message becomes one row per destination in
  `sync.deliveries`, in the transaction that stores the batch's offsets (exactly once), in one
  statement. It never waits on a destination.
- Per lead, in order: a destination's rows are split into lanes by lead (`events.lane_of`); a
  lane is FIFO and sends its next request only when the previous one was delivered or
  dead-lettered; lanes run in parallel. A lead's routing events are put in `sequence` order
  across the three routing topics (`ordering`: sorted within a batch, held at most
  `reorder_wait_s` across batches).
- One sender per destination across replicas, by lease (`delivery`); rate limit and pauses
  (Retry-After) in the lease holder.
- Failures (`retries`): 2xx delivered; 400/413/415/422 dead-lettered at once; everything else
  retried with exponential backoff and full jitter, Retry-After honoured, until `max_attempts`,
  then `sync.dead_letters`; `python -m services.sync replay` queues them again.
- Privacy: an erasure deletes the leads' queued deliveries, dead letters and held events,
  queues the notice for the destinations that take erasures, and reports on
  `privacy.reports`; later messages about the leads are dropped.
- Health: `/metrics` per destination (`metrics`) and `python -m services.sync destinations`.
"""
