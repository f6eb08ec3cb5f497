"""Use cases: what an operator's action does, independent of the front end that asks for it.

Each is a whole transaction, ``something_txn(conn, actor, ...)``: it checks
its input, changes the store and appends its audit row in that transaction,
and refuses with :mod:`mepl.app.errors`.  The CLI runs them through
:class:`mepl.app.context.SyncTransactions`, the admin API through
``DatabasePool.run_interaction``; neither opens transactions of its own.

- :mod:`mepl.app.commands`: queue for a device, a group or the fleet; list,
  show with history, cancel;
- :mod:`mepl.app.devices`: add, show, list, update, enrol, the import's audit;
- :mod:`mepl.app.groups`: create, list, show, members;
- :mod:`mepl.app.keys`: server key rotation and key usage.
"""
