"""The admin API: HTTP+JSON for the admins' consoles, reached only through the console proxy.

- :mod:`mepl.admin.routes`: the route table (method, path, schemas, role, audit action);
- :mod:`mepl.admin.openapi`: the OpenAPI 3.1 document generated from it;
- :mod:`mepl.admin.assertion`: the proxy's signed assertion, verified on every request;
- :mod:`mepl.admin.server`: the twisted.web resource, the per-request audit, the listener;
- :mod:`mepl.admin.handlers`: thin adapters from each route to the use cases of :mod:`mepl.app`,
  one module per resource;
- :mod:`mepl.admin.events`: the live event stream (server-sent events).

See docs/admin-api.md.
"""
