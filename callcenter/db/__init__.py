"""PostgreSQL: the embedded server, the pool, named SQL and migrations."""
