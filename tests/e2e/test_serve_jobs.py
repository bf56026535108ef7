"""``scimlink sp serve`` runs the scheduled jobs beside the server: an activation e-mail queued by
a SCIM create reaches a real SMTP server (aiosmtpd) with no other command, on both databases."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.conftest import SmtpServerUp
from tests.conftest import free_port
from tests.conftest import user_body
from tests.e2e.conftest import cli_json
from tests.e2e.conftest import start_server


def test_serve_sends_activation_email_over_smtp(
    server_env: dict[str, str], smtp_server: SmtpServerUp
) -> None:
    env = {
        **server_env,
        "SCIMLINK_SP_SMTP_HOST": "127.0.0.1",
        "SCIMLINK_SP_SMTP_PORT": str(smtp_server.settings.port),
        "SCIMLINK_SP_SMTP_SECURITY": "none",
        "SCIMLINK_SP_SMTP_SENDER": "insync@example.com",
        "SCIMLINK_SP_JOBS_INTERVAL": "0.3",
    }
    tenant = cli_json(env, "sp", "tenant", "create", f"mail-{uuid.uuid4().hex[:8]}")["id"]
    cli_json(env, "sp", "provisioning", "use-scim", "--tenant", tenant)
    token = cli_json(env, "sp", "token", "generate", "--tenant", tenant)["token"]
    cli_json(
        env,
        "sp",
        "mapping",
        "create",
        "--tenant",
        tenant,
        "--name",
        "Any",
        "--any",
        "--activation-email",
    )
    port = free_port()
    server = start_server(env, port)
    recipient = f"new-{uuid.uuid4().hex[:8]}@example.com"
    try:
        created = httpx.post(
            f"http://127.0.0.1:{port}/insync/scim/Users",
            json=user_body(recipient),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 20
        while not smtp_server.inbox.received(recipient) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(10)
    [message] = smtp_server.inbox.received(recipient)
    assert message["Subject"] == "Activate your inSync account"
    assert message["From"] == "insync@example.com"
    assert recipient in message.get_content()
