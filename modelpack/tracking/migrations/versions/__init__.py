"""The schema's revisions, oldest first (``vNNNN_*.py``; Alembic loads them by path, never imports this package)."""
