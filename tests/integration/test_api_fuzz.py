"""API fuzzing: schemathesis generates requests for every operation of the OpenAPI document and checks that no
response is a server error and every response matches the documented status codes and schemas. Requests go
through the ASGI app in-process, as an operator (a bearer token) and as an anonymous caller, on a hub with a
release, an active project, a finished job and a pending output. Bounded: a few examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hygie.api import create_app
from hygie.api.config import WebConfig
from hygie.config import Settings
from hygie.governance.accounts import Accounts
from hygie.governance.store import open_store
from tests.web_helpers import CONSOLE
from tests.web_story import hub_with_people

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 4


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    root = tmp_path_factory.mktemp("fuzz")
    s = Settings(home=root / "home", master_key_file=root / "home" / "keys" / "master.key")
    hub_with_people(s, root)
    with open_store(s) as store:
        _, token = Accounts(store).create_token(CONSOLE, "olivia", "fuzz")
    return s, token


@pytest.mark.parametrize("who", ["operator", "anonymous"])
def test_no_server_error_and_every_response_matches_the_schema(fuzz_hub, who, monkeypatch):
    s, token = fuzz_hub
    monkeypatch.setenv("HYGIE_HOME", str(s.home))
    app = create_app(s, WebConfig(secure_cookies=False, login_attempts_per_ip=10_000))
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"} if who == "operator" else {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        call()
