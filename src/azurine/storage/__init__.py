"""State: the database (SQLAlchemy 2 + Alembic), SQLite by default and PostgreSQL for scale."""
