"""Retention, legal holds and erasure: what may leave the ledger, and the sealed receipts
that say what did."""
