"""The scoring engine: rule set model, conditions, decay and the score arithmetic. Pure: no I/O,
no clock (every function takes the time it evaluates at), so a replay gives the same numbers."""
