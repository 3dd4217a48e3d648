"""rate_buckets: the rate limit's token buckets in the database, shared by every replica
(BITZERO_RATE_LIMIT_STORE=database, the default with PostgreSQL).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
