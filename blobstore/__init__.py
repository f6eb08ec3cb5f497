"""PostgreSQL store: schema, the threaded database pool, and the device, command, message and audit stores."""
