#!/usr/bin/env python3
"""Writes schema/openapi.yaml from the worker's route table (the one in
workers/core/src/api/table.rs, served in development at GET /api/_diag/routes) and the JSON
Schemas of the types the table names for request bodies and success answers
(schema/openapi.components.json, generated from those Rust types by
`UPDATE_SCHEMAS=1 cargo test -p edgevideo-core`), so the API description cannot drift from the
routes or the bodies: tests/e2e/test_openapi.py checks they agree and that real answers
validate against it.

    python3 schema/openapi.py http://127.0.0.1:8787 > schema/openapi.yaml"""

import json
import pathlib
import re
import sys
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
COMPONENTS = HERE / "openapi.components.json"

ACCESS = {
    "public": ("Anyone.", []),
    "authenticated": ("Any signed-in user (session token as Bearer or the ev_session cookie).", [{"session": []}, {"cookie": []}]),
    "url_token": ("Holders of a signed URL: the token is the path's first segment.", []),
    "task_token": ("The plugin that holds the task's single-use token (in the body).", []),
    "transcoder_signature": ("The transcoder: Standard Webhooks signature with TRANSCODER_SECRET.", []),
    "diagnostics": ("Development deployments with DIAGNOSTICS=on only; 404 elsewhere.", []),
}

STATUS_TEXT = {
    101: "Switching protocols: a WebSocket",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    206: "Partial content (a Range request)",
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden (a login: `email_unverified`, a new link was mailed)",
    429: "Too many attempts: wait for Retry-After (seconds)",
    503: "Unavailable: a binding failed its check (health), or no mail could be sent (signup)",
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}


def words(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r" \1", name).lower().capitalize()


def access(rule: str):
    if rule.startswith("role:"):
        role = rule.split(":", 1)[1]
        return (f"Users whose stored role is {role} (admins too).", [{"session": []}, {"cookie": []}])
    return ACCESS[rule]


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def operation(r: dict) -> dict:
    description, security = access(r["access"])
    op = {
        "operationId": r["name"][0].lower() + r["name"][1:],
        "summary": words(r["name"]),
        "description": (r["summary"] + " " if r.get("summary") else "") + "Access: " + description,
        "x-edgevideo-access": r["access"],
        "security": security,
    }
    params = re.findall(r"\{(\w+)\}", r["path"])
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                            for p in params]
    if r.get("body"):
        op["requestBody"] = {
            # A logout may come without a body; every other body is required.
            "required": r["name"] != "Logout",
            "content": {"application/json": {"schema": ref(r["body"])}},
        }
    responses: dict[str, dict] = {}
    for reply in r.get("replies", []):
        answer = responses.setdefault(str(reply["status"]), {"description": STATUS_TEXT[reply["status"]]})
        if reply["content_type"]:
            if reply["schema"]:
                schema = ref(reply["schema"])
            elif reply["content_type"] == "application/json":
                # A JSON answer without a type of its own is the error body.
                schema = ref("Error")
            else:
                schema = {"type": "string", "format": "binary"}
            answer.setdefault("content", {})[reply["content_type"]] = {"schema": schema}
    responses["default"] = {
        "description": "An error" if responses else "The result, or an error",
        "content": {"application/json": {"schema": ref("Error")}},
    }
    op["responses"] = responses
    return op


def document(routes: list[dict], components: dict | None = None) -> dict:
    """The OpenAPI document of `routes` (the served route table) with `components` (the
    generated schemas; read from schema/openapi.components.json when not given)."""
    if components is None:
        components = json.loads(COMPONENTS.read_text())
    schemas = {"Error": ERROR, **components}
    paths: dict[str, dict] = {}
    for r in routes:
        paths.setdefault(r["path"], {})[r["method"].lower()] = operation(r)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgevideo",
            "version": "0.1.0",
            "description": 'Live and on-demand video at the edge. Every error is {"error":{"code","message"}} with a fitting status.',
        },
        "components": {
            "securitySchemes": {
                "session": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "ev_session"},
            },
            "schemas": schemas,
        },
        "paths": {path: paths[path] for path in sorted(paths)},
    }


PLAIN_KEY = re.compile(r"[A-Za-z_/][A-Za-z0-9_./{}-]*")
RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def key(k: str) -> str:
    return k if PLAIN_KEY.fullmatch(k) and k.lower() not in RESERVED else json.dumps(k)


def scalar(v) -> str:
    return json.dumps(v, ensure_ascii=False)


def is_flat(v) -> bool:
    """Written on one line: scalars, empty collections, lists of scalars."""
    if isinstance(v, (dict, list)) and not v:
        return True
    if isinstance(v, list):
        return all(not isinstance(x, (dict, list)) for x in v)
    return not isinstance(v, dict)


def flat(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(scalar(x) for x in v) + "]"
    return "{}" if isinstance(v, dict) else scalar(v)


def emit(value, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if is_flat(v):
                out.append(f"{pad}{key(k)}: {flat(v)}")
            else:
                out.append(f"{pad}{key(k)}:")
                emit(v, indent + 2, out)
    else:
        for item in value:
            if is_flat(item):
                out.append(f"{pad}- {flat(item)}")
                continue
            lines: list[str] = []
            emit(item, indent + 2, lines)
            lines[0] = pad + "- " + lines[0][indent + 2:]
            out.extend(lines)


def render(routes: list[dict], components: dict | None = None) -> str:
    out = ["# Generated by schema/openapi.py from the worker's route table and"
           " schema/openapi.components.json; do not edit by hand."]
    emit(document(routes, components), 0, out)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8787"
    with urllib.request.urlopen(base + "/api/_diag/routes") as response:
        sys.stdout.write(render(json.load(response)))
