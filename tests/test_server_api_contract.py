"""Contract tests generated from the control API's own OpenAPI document (schemathesis), against the real server
under uvicorn on loopback: whatever the generated request (valid or deliberately invalid), the answer is never
a 5xx and always matches what the document promises (status codes, content types, response schemas)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import schemathesis.specs.openapi.schemas  # noqa: F401  imported at collection (see test_ads_api_contract.py)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.conftest import parses_as_http
from tests.server_helpers import Running, running_server


@pytest.fixture(scope="module")
def contract_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_server(tmp_path_factory.mktemp("contract") / "data", backoff_base=60.0, backoff_max=60.0) as srv:
        # something to find, so lookups also take their success paths (stopped: nothing runs)
        srv.api.post("/v1/streams", json={"id": "s1", "ingest": "push", "enabled": False}).raise_for_status()
        srv.api.post("/v1/streams", json={"id": "p1", "ingest": "pull", "source": "rtsp://127.0.0.1:9/x",
                                          "enabled": False}).raise_for_status()
        yield srv


def _checker(cases: st.SearchStrategy[schemathesis.Case], key: str, excluded: list[Any]) -> Any:
    @given(case=cases)
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, timeout=15, excluded_checks=excluded)

    return check


def test_every_operation_honours_its_openapi_contract(contract_srv: Running) -> None:
    base = str(contract_srv.api.base_url).rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    key = contract_srv.server.admin_key
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() == "DELETE" and op.path == "/v1/api-keys/{key_id}":
            continue  # would revoke the key the test runs with (covered in test_server_api.py)
        operations += 1
        cases = st.one_of(op.as_strategy(GenerationMode.POSITIVE),
                          op.as_strategy(GenerationMode.NEGATIVE)).filter(parses_as_http)
        # rules the schema cannot express (a pull stream's source scheme, a break only on a live stream, an
        # option RunOptions refuses) are rightly 4xx for schema-valid data
        excluded = [schemathesis.checks.positive_data_acceptance]
        try:
            _checker(cases, key, excluded)()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:2000]}")
    assert operations >= 18
    assert not failures, "\n\n".join(failures)
