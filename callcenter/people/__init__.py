"""People who sign in (supervisors, admins), their sessions, and integration tokens."""
