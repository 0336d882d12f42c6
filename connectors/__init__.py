"""Department-side connectors (the seeds' 前置机): read a department's source, publish change
records for the catalog entries that department provides. See docs/architecture.md."""
