"""The login backoff under concurrency: each attempt on an account is claimed by a single
SQL upsert (D1 on Cloudflare, SQLite on Spin), so a burst of concurrent wrong passwords gets
the free failures' password checks and then waits the account's delay (1 s, doubling), where
a read-then-write state let every request of a burst read the same state and pass."""

import time

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import DEV_ENV, Api, new_email, signup, start_worker

LIMIT = 10  # LOGIN_LIMIT_PER_EMAIL's default: failures before the delays start
BURST = 40


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    """A worker of its own: the burst must not spend the shared worker's per-address budget."""
    w = start_worker(tmp_path_factory, transcoder)
    yield w
    w.stop()


def test_concurrent_wrong_logins_get_no_more_password_checks_than_the_backoff_allows(worker):
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
    # The free failures, then one check per delay that passes while the burst lasts (1 s,
    # then 2 s more): a burst of a few seconds gets at most two more.
    assert checked <= LIMIT + 2, f"{checked} of {BURST} concurrent attempts had their password checked"
    assert checked >= LIMIT, f"only {checked} checks: the backoff must not refuse free failures"
    limited = [r for r in answers if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "rate_limited" for r in limited)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    # No lockout: the right password works once the account's delay passed.
    for _ in range(2):
        r = requests.post(worker.url + "/api/auth/login",
                          json={"email": address, "password": "correct horse battery staple"}, timeout=60)
        if r.status_code != 429:
            break
        time.sleep(int(r.headers["Retry-After"]))
    assert r.status_code == 200, r.text
