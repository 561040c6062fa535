"""procrastinate job-queue schema

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:48:00

Applies the schema shipped with the installed procrastinate, so ``rxroute migrate`` alone
brings a database fully up to date. Later procrastinate upgrades add their own migrations
as new revisions here.
"""

from collections.abc import Sequence

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(SchemaManager.get_schema())


def downgrade() -> None:
    # Drop everything procrastinate created: tables (with their triggers), functions, types.
    op.execute(
        """
        DO $$
        DECLARE obj record;
        BEGIN
            FOR obj IN SELECT tablename FROM pg_tables
                       WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%'
            LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', obj.tablename);
            END LOOP;
            FOR obj IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                       JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%'
            LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', obj.signature);
            END LOOP;
            FOR obj IN SELECT t.typname FROM pg_type t
                       JOIN pg_namespace n ON n.oid = t.typnamespace
                       WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate%'
                         AND t.typtype IN ('e', 'c')
            LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', obj.typname);
            END LOOP;
        END;
        $$
        """
    )
