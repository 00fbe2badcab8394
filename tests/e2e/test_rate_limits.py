"""The login limit under concurrency: the attempt counters are single SQL upserts (D1 on
Cloudflare, SQLite on Spin), so a burst of concurrent wrong passwords gets no more password
checks than the limit, where a read-then-write counter let every request of a burst read the
same count and pass."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import DEV_ENV, Api, new_email, signup, start_worker

LIMIT = 10  # LOGIN_LIMIT_PER_EMAIL's default
BURST = 40


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    """A worker of its own: the burst must not spend the shared worker's per-address budget."""
    w = start_worker(tmp_path_factory, transcoder)
    yield w
    w.stop()


def test_concurrent_wrong_logins_get_no_more_password_checks_than_the_limit(worker):
    assert "LOGIN_LIMIT_PER_EMAIL" not in DEV_ENV
    with Api(worker.url) as api:
        address = new_email()
        signup(api, address)

    def attempt(_):
        # One connection per request, so they reach the worker at the same time.
        return requests.post(worker.url + "/api/auth/login",
                             json={"email": address, "password": "wrong password!"}, timeout=60)

    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(attempt, range(BURST)))
    statuses = [r.status_code for r in answers]
    # A 401 is a password check (wrong password); a 429 was refused before any check.
    assert set(statuses) <= {401, 429}, statuses
    checked = statuses.count(401)
    assert checked <= LIMIT, f"{checked} of {BURST} concurrent attempts had their password checked"
    assert checked == LIMIT, f"only {checked} checks: the limit must not refuse more than it counts"
    limited = [r for r in answers if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "rate_limited" for r in limited)
    # The right password is refused too while the window lasts.
    r = requests.post(worker.url + "/api/auth/login",
                      json={"email": address, "password": "correct horse battery staple"}, timeout=60)
    assert r.status_code == 429, r.text
