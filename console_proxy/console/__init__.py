"""``mdm-console``: the admins' command-line console, a thin front end of the client library."""
