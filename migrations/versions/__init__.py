"""Alembic revisions of the blobstore schema, oldest first."""
