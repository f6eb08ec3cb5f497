"""The TLS front for admins' consoles (client certificates, roles, audit); built in a later issue."""
