"""Alembic history of the app half's database."""
