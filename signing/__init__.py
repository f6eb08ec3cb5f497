"""The signed-SMS wire format, keys, certificates, counters and the reference handset.

Pure code: no I/O beyond key files, and no import of any other package of ours.
"""
