"""Accounts, roles and session tokens in the real Workers runtime. Tokens are checked with
PyJWT, a JWT library nobody here wrote, in both directions."""

import statistics
import time

import jwt  # PyJWT
import requests

from conftest import DEV_ENV, PASSWORD, Worker, bearer, free_port, mail, signup, wait_until
from conftest import new_email as email

SECRET = DEV_ENV["SESSION_SECRET"]


def pyjwt_token(claims, key=SECRET, algorithm="HS256"):
    now = int(time.time())
    base = {"sub": "usr_nobodynobody", "email": "x@example.com", "role": "admin",
            "iat": now, "exp": now + 600, "iss": "edgevideo"}
    return jwt.encode({**base, **claims}, key, algorithm=algorithm)


def test_signup_mails_a_link_that_signs_in_with_a_token_pyjwt_verifies(api, worker):
    address = email("broadcast.test")
    r = api.post("/api/auth/signup", json={"email": "  " + address.upper() + " ", "password": PASSWORD})
    assert r.status_code == 202, r.text
    assert r.json()["email"] == address, "emails are normalised"
    assert "token" not in r.json() and "set-cookie" not in r.headers, "no session before the link"

    # The mail, as the real SMTP server received it.
    [message] = mail().ordered_to(address)
    assert message["To"] == f"<{address}>" or address in message["To"]
    assert message["From"].addresses[0].addr_spec == DEV_ENV["MAIL_FROM"]
    assert message["Subject"] == "Confirm your email for edgevideo"
    assert message["Message-ID"] and message["Date"]
    body = message.get_content()
    link = next(word for word in body.split() if "/verify#" in word)
    assert link.startswith(worker.url + "/verify#"), "links point at PUBLIC_URL"
    token = link.split("#", 1)[1]

    # Until the link is opened: no session, and no broadcaster role from the typed domain.
    r = api.post("/api/auth/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 403 and r.json()["error"]["code"] == "email_unverified", r.text
    r = api.post("/api/auth/verify", json={"token": token, "password": "somebody else's"})
    assert r.status_code == 401, r.text

    r = api.post("/api/auth/verify", json={"token": token, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["role"] == "broadcaster" and body["user"]["email_verified"] is True
    assert "password" not in r.text and "pbkdf2" not in r.text
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], issuer="edgevideo",
                        options={"require": ["sub", "email", "role", "iat", "exp", "iss"]})
    assert claims["sub"] == body["user"]["id"]
    assert claims["email"] == address and claims["role"] == "broadcaster"
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "HS256"
    # The key id names the signing key (for rotation) without revealing it.
    assert len(header["kid"]) == 8 and header["kid"] not in DEV_ENV["SESSION_SECRET"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("ev_session=" + body["token"])
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"]:
        assert attribute in cookie
    r = api.post("/api/auth/verify", json={"token": token, "password": PASSWORD})
    assert r.status_code == 400 and r.json()["error"]["code"] == "link_used", "single-use"


def test_signup_answers_the_same_for_taken_addresses_and_rejects_bad_input(api):
    address = email()
    first = api.post("/api/auth/signup", json={"email": address, "password": PASSWORD})
    token = mail().link_token(address)
    assert api.post("/api/auth/verify", json={"token": token, "password": PASSWORD}).status_code == 200
    # The address has a verified account now: the answer is the same, the mail a notice.
    again = api.post("/api/auth/signup", json={"email": address.upper(), "password": PASSWORD + "!"})
    assert (again.status_code, again.json()) == (first.status_code, first.json()) == (202, again.json())
    notice = wait_until(lambda: (lambda m: m[-1] if len(m) == 2 else None)(mail().ordered_to(address)))
    assert "already has one" in notice.get_content()
    assert api.post("/api/auth/login", json={"email": address, "password": PASSWORD + "!"}).status_code == 401
    r = api.post("/api/auth/signup", json={"email": "not-an-email", "password": PASSWORD})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_email"
    r = api.post("/api/auth/signup", json={"email": email(), "password": "short"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "weak_password"
    r = api.post("/api/auth/signup", json={"email": email()})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_without_a_mail_server_nobody_signs_up(tmp_path):
    dead = Worker(tmp_path, extra_vars={"SMTP_URL": f"smtp://127.0.0.1:{free_port()}"}).start()
    try:
        r = requests.post(dead.url + "/api/auth/signup", json={"email": email(), "password": PASSWORD},
                          timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "mail_unavailable", r.text
    finally:
        dead.stop()


def test_login_and_me_with_bearer_and_cookie(api):
    address = email()
    user = signup(api, address)["user"]
    r = api.post("/api/auth/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    me = api.get("/api/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["user"]["id"] == user["id"]
    api.cookies.clear()
    me = api.get("/api/me", headers={"cookie": f"ev_session={token}"})
    assert me.status_code == 200 and me.json()["user"]["email"] == address


def test_wrong_password_and_unknown_email_get_the_same_401(api):
    address = email()
    signup(api, address)
    wrong = api.post("/api/auth/login", json={"email": address, "password": "wrong password!"})
    unknown = api.post("/api/auth/login", json={"email": email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_no_token_and_bad_tokens_are_401(api):
    api.cookies.clear()
    assert api.get("/api/me").status_code == 401
    now = int(time.time())
    bad_tokens = {
        "garbage": "not.a.token",
        "other secret": pyjwt_token({}, key="another-secret-another-secret-123"),
        "expired": pyjwt_token({"iat": now - 7200, "exp": now - 3600}),
        "future": pyjwt_token({"iat": now + 3600, "exp": now + 7200}),
        "wrong issuer": pyjwt_token({"iss": "someone-else"}),
        "alg none": jwt.encode({"sub": "usr_x", "email": "x@example.com", "role": "admin", "iat": now,
                                "exp": now + 600, "iss": "edgevideo"}, None, algorithm="none"),
        "HS512": pyjwt_token({}, algorithm="HS512"),
    }
    for name, token in bad_tokens.items():
        r = api.get("/api/me", headers=bearer(token))
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        assert r.json()["error"]["code"] == "unauthorized"


def test_logout_revokes_the_token_and_everywhere_revokes_every_session(api):
    address = email()
    signup(api, address)
    login = lambda: api.post("/api/auth/login", json={"email": address, "password": PASSWORD}).json()["token"]  # noqa: E731
    phone, laptop, tablet = login(), login(), login()
    assert jwt.decode(phone, SECRET, algorithms=["HS256"])["sid"] != jwt.decode(laptop, SECRET, algorithms=["HS256"])["sid"]
    api.cookies.clear()
    # Logging out the phone stops its token (not only its cookie); the others go on.
    r = api.post("/api/auth/logout", headers=bearer(phone))
    assert r.status_code == 200 and "ev_session=;" in r.headers["set-cookie"]
    me = api.get("/api/me", headers=bearer(phone))
    assert me.status_code == 401 and me.json()["error"]["code"] == "unauthorized", me.text
    assert api.get("/api/me", headers=bearer(laptop)).status_code == 200
    # Everywhere: every session of the user stops; a new login works at once.
    r = api.post("/api/auth/logout", json={"everywhere": True}, headers=bearer(laptop))
    assert r.status_code == 200
    assert api.get("/api/me", headers=bearer(laptop)).status_code == 401
    assert api.get("/api/me", headers=bearer(tablet)).status_code == 401
    assert api.get("/api/me", headers=bearer(login())).status_code == 200
    # A bad body is refused with the JSON error; no token: only the cookie is cleared.
    assert api.post("/api/auth/logout", json={"everywhere": "yes"}).status_code == 400
    assert api.post("/api/auth/logout").status_code == 200


def test_a_password_change_needs_the_current_password_and_ends_older_sessions(api):
    address = email()
    signup(api, address)
    login = lambda password: api.post("/api/auth/login", json={"email": address, "password": password})  # noqa: E731
    phone, laptop = login(PASSWORD).json()["token"], login(PASSWORD).json()["token"]
    api.cookies.clear()
    new = "an entirely new passphrase"
    # A stolen session alone cannot change the password: the current one is asked for.
    r = api.post("/api/auth/password", json={"current_password": "guessed wrong", "new_password": new},
                 headers=bearer(phone))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    assert login(PASSWORD).status_code == 200 and login(new).status_code == 401
    api.cookies.clear()
    r = api.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": new},
                 headers=bearer(phone))
    assert r.status_code == 200, r.text
    fresh = r.json()["token"]
    api.cookies.clear()
    # Every session from before the change ends, the one that made it included.
    assert api.get("/api/me", headers=bearer(phone)).status_code == 401
    assert api.get("/api/me", headers=bearer(laptop)).status_code == 401
    assert api.get("/api/me", headers=bearer(fresh)).status_code == 200
    assert login(PASSWORD).status_code == 401 and login(new).status_code == 200


def test_a_pyjwt_token_with_our_secret_is_accepted(api):
    user = signup(api, email())["user"]
    token = pyjwt_token({"sub": user["id"], "email": user["email"], "role": "viewer"})
    r = api.get("/api/me", headers=bearer(token))
    assert r.status_code == 200 and r.json()["user"]["id"] == user["id"]


def test_broadcaster_domain_and_admin_grants(api):
    broadcaster = signup(api, email("broadcast.test"))
    assert broadcaster["user"]["role"] == "broadcaster"
    viewer = signup(api, email())
    admin_login = api.post("/api/auth/login", json={"email": "admin@edgevideo.test", "password": PASSWORD})
    if admin_login.status_code == 401:
        admin = signup(api, "admin@edgevideo.test")
    else:
        admin = admin_login.json()
    assert admin["user"]["role"] == "admin"

    # A viewer may not grant roles.
    r = api.put(f"/api/users/{broadcaster['user']['id']}/role", json={"role": "admin"},
                headers=bearer(viewer["token"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # No token: 401.
    api.cookies.clear()
    assert api.put(f"/api/users/{viewer['user']['id']}/role", json={"role": "admin"}).status_code == 401

    # The admin grants developer; it shows in the stored user at once and in the next token.
    r = api.put(f"/api/users/{viewer['user']['id']}/role", json={"role": "developer"},
                headers=bearer(admin["token"]))
    assert r.status_code == 200 and r.json()["user"]["role"] == "developer"
    me = api.get("/api/me", headers=bearer(viewer["token"])).json()
    assert me["user"]["role"] == "developer" and me["token_role"] == "viewer"
    again = api.post("/api/auth/login", json={"email": viewer["user"]["email"], "password": PASSWORD}).json()
    assert jwt.decode(again["token"], SECRET, algorithms=["HS256"], issuer="edgevideo")["role"] == "developer"

    r = api.put(f"/api/users/{viewer['user']['id']}/role", json={"role": "root"}, headers=bearer(admin["token"]))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_role"
    r = api.put("/api/users/usr_doesnotexist0/role", json={"role": "viewer"}, headers=bearer(admin["token"]))
    assert r.status_code == 404


def test_a_revoked_role_stops_working_before_the_token_expires(api):
    admin = api.post("/api/auth/login", json={"email": "admin@edgevideo.test", "password": PASSWORD})
    admin = admin.json() if admin.status_code == 200 else signup(api, "admin@edgevideo.test")
    deputy = signup(api, email())
    api.put(f"/api/users/{deputy['user']['id']}/role", json={"role": "admin"}, headers=bearer(admin["token"]))
    deputy_admin = api.post("/api/auth/login", json={"email": deputy["user"]["email"], "password": PASSWORD}).json()
    target = signup(api, email())["user"]["id"]
    ok = api.put(f"/api/users/{target}/role", json={"role": "broadcaster"}, headers=bearer(deputy_admin["token"]))
    assert ok.status_code == 200
    api.put(f"/api/users/{deputy['user']['id']}/role", json={"role": "viewer"}, headers=bearer(admin["token"]))
    denied = api.put(f"/api/users/{target}/role", json={"role": "admin"}, headers=bearer(deputy_admin["token"]))
    assert denied.status_code == 403, "a token carries no more rights than the stored user"


def test_failed_logins_delay_the_account_without_locking_it_out(api):
    """Past LOGIN_LIMIT_PER_EMAIL (10) failures each attempt on the account waits a delay
    (1 s, doubling): refused with 429 and Retry-After, and once it passed the right password
    works."""
    address = email()
    signup(api, address)
    statuses = [api.post("/api/auth/login", json={"email": address, "password": "wrong password!"}).status_code
                for _ in range(10)]
    assert statuses == [401] * 10
    # A slow machine may pass the first delay (1 s) before the next attempt; a few more
    # failures reach a refusal in any case.
    for _ in range(3):
        r = api.post("/api/auth/login", json={"email": address, "password": "wrong password!"})
        if r.status_code == 429:
            break
        assert r.status_code == 401, r.text
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 8, wait
    time.sleep(wait)
    r = api.post("/api/auth/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200, r.text


def test_a_login_for_an_unknown_email_costs_as_much_as_a_real_one(api):
    """A login checks the password with PBKDF2 at the configured iteration count (100,000 in
    config/dev.env), which dominates its time; for an unknown email the worker spends the same
    work, so that the time of a refused login does not tell whether the address has an
    account. Interleaved samples, compared by median: without the dummy hash an unknown email
    answers in a small fraction of a real login's time."""
    address = email()
    signup(api, address)
    known, unknown = [], []
    for _ in range(5):
        for samples, address_, status in ((known, address, 200), (unknown, email(), 401)):
            t0 = time.perf_counter()
            r = api.post("/api/auth/login", json={"email": address_, "password": PASSWORD})
            samples.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == status, r.text
    figures = (f"median {statistics.median(known):.0f} ms for an account, "
               f"{statistics.median(unknown):.0f} ms for an unknown email")
    assert statistics.median(unknown) > 0.5 * statistics.median(known), figures
