"""`make bench`: figures for speed and memory, measured on the real broker and PostgreSQL.

Not part of `make test`: figures are printed and written as JSON, never asserted in tests.
"""
