"""The TLS front for admins' consoles: client certificates, roles, rate limits, audit.

``mdm-proxy`` (:mod:`console_proxy.main`) and the admin PKI
(:mod:`console_proxy.pki`, used by ``mepl pki``).  Imports nothing of MEPL's
own packages: it works from the admin API's OpenAPI document and the wire.
See docs/console-proxy.md.
"""
