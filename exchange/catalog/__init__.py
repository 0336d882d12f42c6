"""The data catalog (目录): departments, entries, their schemas, validation and publication."""
