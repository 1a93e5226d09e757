"""Helpers shared by the DAG files: assets, default args, context readers (no DAGs here)."""
