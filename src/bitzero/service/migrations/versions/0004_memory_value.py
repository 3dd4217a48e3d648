"""memories.value: the slot's value as data (the user's name, a liked thing), so nothing parses it
back out of the memory's sentence. Existing name memories get theirs from the one sentence shape
the extractor wrote ("The user's name is Ana.").

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
NAME_SENTENCE = "The user's name is "


def upgrade() -> None:
    op.add_column("memories", sa.Column("value", sa.Text(), nullable=True))
    memories = sa.table("memories", sa.column("id", sa.String), sa.column("slot", sa.String),
                        sa.column("content", sa.Text), sa.column("value", sa.Text))
    connection = op.get_bind()
    for row in connection.execute(sa.select(memories.c.id, memories.c.content).where(memories.c.slot == "name")).all():
        if row.content.startswith(NAME_SENTENCE):
            name = row.content.removeprefix(NAME_SENTENCE).rstrip(".")
            connection.execute(memories.update().where(memories.c.id == row.id).values(value=name))


def downgrade() -> None:
    with op.batch_alter_table("memories") as batch:
        batch.drop_column("value")
