"""messages.prompt: the prompt a reply was generated from (JSON turns, the system turn with persona,
memories and emotion note first), so feedback on the reply trains on what the model saw.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("messages", sa.Column("prompt", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("prompt")
