from tests.conftest import Scim
from tests.conftest import user_body


def test_create_then_read_back(scim: Scim) -> None:
    created = scim.post("/Users", json=user_body("Smoke@Example.com"))
    assert created.status_code == 201, created.text
    user = created.json()
    fetched = scim.get(f"/Users/{user['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == user
    assert fetched.headers["etag"] == 'W/"1"'
