"""Live PostgreSQL: connection from a server block, catalog inspection, preflight.

Only the live-database commands import this package; `generate` never does.
"""
