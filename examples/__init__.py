"""Examples for integrators (run by the tests, so they stay true)."""
