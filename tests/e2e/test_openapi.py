"""schema/openapi.yaml describes exactly the routes of the worker's route table."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "schema"))

import openapi  # noqa: E402


def test_openapi_matches_the_route_table(api):
    routes = api.get("/api/_diag/routes").json()
    assert len(routes) > 40
    committed = (ROOT / "schema" / "openapi.yaml").read_text()
    assert committed == openapi.render(routes), (
        "schema/openapi.yaml is out of date: python3 schema/openapi.py URL > schema/openapi.yaml")
