"""Reports: papermill-executed notebooks converted to self-contained HTML."""
