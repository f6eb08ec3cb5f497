"""SMPP 3.4 ESME side: codec, sans-I/O session, Twisted binds, receipts, simulator.

``smpplib`` is used as a PDU codec only (``make_pdu``/``parse_pdu``); all
I/O goes through Twisted.  See docs/smpp.md.
"""
