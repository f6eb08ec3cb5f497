"""The TLS front for admins' consoles: client certificates, roles, audit.

Built in a later release; the package exists so the layout is fixed.
"""
