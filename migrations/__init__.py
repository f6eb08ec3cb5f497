"""Alembic environment and revisions for the blobstore schema."""
