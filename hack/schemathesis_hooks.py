"""Schemathesis checks of the launcher's own error contract: every 4xx is problem+json."""

import json

import schemathesis


def _content_type(response):
    value = response.headers.get("content-type") or response.headers.get("Content-Type") or ""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return value


@schemathesis.check
def client_errors_are_problem_json(ctx, response, case):
    """A 4xx answer is an RFC 9457 problem with a status equal to the HTTP status and a detail."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = _content_type(response)
    if content_type != "application/problem+json":
        raise AssertionError(f"{response.status_code} answered with content type {content_type!r}, not application/problem+json")
    body = json.loads(response.content)
    if body.get("status") != response.status_code:
        raise AssertionError(f"problem status {body.get('status')!r} differs from HTTP {response.status_code}")
    if not body.get("detail") or not str(body.get("type", "")).startswith("urn:problem:kube-job-launcher:"):
        raise AssertionError(f"problem without a detail or a type: {body}")
    return None
