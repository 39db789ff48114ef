"""Tracking: experiments, runs, params, metrics, tags, artifacts and logged models, in a SQL store (store.py)."""
