"""MEPL: the main event-processing loop and composition root of the SMS device-management tier."""
