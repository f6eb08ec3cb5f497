"""The running loop: the transactions of both flows, the dispatcher's and inbound worker's."""
