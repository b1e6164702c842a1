"""The verbs of the domain. Services take plain arguments, own their transactions and record audit events."""
