"""The desktop console (``mdm-console gui``): a PySide6 application over the client library.

Install it with the optional extra: ``pip install 'mepl[console]'``.  Like
``mdm-console`` it talks to the admin API only through the console proxy,
as the admin whose PKCS#12 identity it signs in with; it holds no database
access and no server keys, and never calls the network on the UI thread.
Only this package imports PySide6, so the rest of ``console_proxy`` works
without the extra.
"""
