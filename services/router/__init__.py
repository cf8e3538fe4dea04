"""router: routing decisions. Consumes `leads.lifecycle`, produces `routing.sdr` and
`routing.nurture`."""
