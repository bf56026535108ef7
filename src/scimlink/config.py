"""Settings from the environment (prefix ``SCIMLINK_``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "scimlink"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCIMLINK_", extra="ignore")

    data_dir: Path = _default_data_dir()
    #: The app half's database; default: ``sp.db`` under ``data_dir`` (SQLite).
    sp_database_url: str | None = None
    #: Public base URL of the app half (for ``meta.location``); default: taken from the request.
    sp_public_url: str | None = None
    sp_max_body_bytes: int = 1024 * 1024
    sp_max_results: int = 1000
    sp_max_filter_length: int = 4096
    sp_max_filter_nodes: int = 50
    sp_max_filter_values: int = 100
    sp_max_filter_depth: int = 10
    #: The SCIM base URL each region's tenants give their IdP. Default: this server's public
    #: URL (or ``http://127.0.0.1:8000``) plus ``/insync/scim`` for both regions. Druva's own are
    #: ``https://apis.druva.com/insync/scim`` and ``https://govcloudapis.druva.com/insync/scim``.
    sp_cloud_scim_url: str | None = None
    sp_govcloud_scim_url: str | None = None
    #: Outgoing mail (activation e-mails, token reminders); unset: mail waits in the outbox.
    sp_smtp_host: str | None = None
    sp_smtp_port: int = 25
    sp_smtp_sender: str = "scimlink@localhost"
    sp_smtp_username: str | None = None
    sp_smtp_password: str | None = None
    sp_smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    #: Seconds between runs of the scheduled jobs inside ``sp serve``; 0 turns them off there.
    sp_jobs_interval: float = 60.0

    def sp_scim_urls(self, default_root: str = "http://127.0.0.1:8000") -> dict[str, str]:
        root = (self.sp_public_url or default_root).rstrip("/") + "/insync/scim"
        return {
            "cloud": self.sp_cloud_scim_url or root,
            "govcloud": self.sp_govcloud_scim_url or root,
        }

    #: The directory half's database; default: ``idp.db`` under ``data_dir`` (SQLite).
    idp_database_url: str | None = None
    #: The directory's master key (a Fernet key) for IdM tokens at rest; default: a key file
    #: ``idp-master.key`` (mode 0600) created under ``data_dir`` on first use.
    idp_master_key: str | None = None
    #: Provisioning worker threads in ``idp serve`` / ``idp worker``.
    idp_worker_threads: int = 4
    #: Seconds between full reconciles of every active application (0 turns them off).
    idp_reconcile_interval: float = 3600.0
    #: Timeout of one outbound SCIM call, in seconds.
    idp_scim_timeout: float = 15.0

    @cached_property
    def idp_database(self) -> str:
        if self.idp_database_url:
            return normalise_database_url(self.idp_database_url)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'idp.db'}"

    @cached_property
    def sp_database(self) -> str:
        if self.sp_database_url:
            return normalise_database_url(self.sp_database_url)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'sp.db'}"


def normalise_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
