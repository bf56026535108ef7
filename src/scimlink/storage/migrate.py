"""Running one half's Alembic history on an engine the caller owns.

Each half keeps its own migrations directory and version table, so both histories can live in
one database without seeing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


@dataclass(frozen=True, slots=True)
class History:
    migrations: Path
    version_table: str

    def config(self, engine: Engine) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.migrations))
        config.set_main_option("version_table", self.version_table)
        config.attributes["engine"] = engine
        return config

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        config = self.config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def downgrade(self, engine: Engine, revision: str) -> None:
        config = self.config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
