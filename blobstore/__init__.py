"""PostgreSQL store: schema, database pool, and the device, command, message and audit stores.

See docs/storage.md.  Modules: ``config`` (the ``[database]`` section),
``schema`` (tables), ``migrate`` (Alembic from code), ``database`` and
``embedded`` (opening the store), ``pool`` and ``batcher`` (running blocking
work off the reactor), ``identity`` (IMEI/IMSI/phone normalisation, pure),
``devices``, ``groups``, ``importer``, ``messages``, ``commands``,
``counters``, ``audit`` (the ``*_txn`` store functions), ``errors``.
"""
