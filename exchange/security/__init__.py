"""Broker-enforced access: principals, their credentials and the ACLs derived from grants."""
