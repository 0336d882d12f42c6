"""Sources of connectors: file drop (CSV/XLSX), SQL table polling, HTTP push."""
