"""The rules behind the login defences (issue 20), in process: how guessing is slowed, whom
a forwarded address is believed from, and when a login cookie stops holding.
tests/web/test_login_security.py attacks the running app with each of them."""

from __future__ import annotations

import asyncio

import pytest

from rag.config import Settings
from rag.web import auth
from rag.web.security import TrustedProxies
from rag.web.throttle import Guesses, Throttle, address_key, retry_after
from rag.web.users import SessionVersions, Users


class Clock:
    """Time that moves only when the test says (the waits are the subject here)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_begin_after_the_free_tries_and_double_up_to_the_longest():
    clock = Clock()
    throttle = Throttle(free=3, longest=8, clock=clock)
    waits = []
    for _ in range(8):
        throttle.failed("k")
        waits.append(throttle.wait("k"))
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]
    clock.now += 5
    assert throttle.wait("k") == 3
    clock.now += 2 * 8 + 8 + 1  # quiet for twice the longest wait after the last: forgotten
    assert throttle.wait("k") == 0
    throttle.failed("k")
    assert throttle.wait("k") == 0  # counting starts again
    assert retry_after(0.2) == "1" and retry_after(2.5) == "3"


def test_a_guesser_never_locks_the_account_out_from_elsewhere():
    clock = Clock()
    guesses = Guesses(Settings(throttle_after=5, throttle_max_wait=60), clock)
    tried = [guesses.begin("203.0.113.9", "alice") for _ in range(50)]
    assert tried.count(0) == 5  # five tries went ahead; the rest were refused unheard
    assert all(wait > 0 for wait in tried[5:])
    assert guesses.begin("198.51.100.7", "alice") == 0  # alice at home
    guesses.succeeded("198.51.100.7", "alice")
    assert guesses.begin("203.0.113.9", "bob") == 0  # another account from there: its own count


def test_one_address_cannot_spray_many_accounts():
    guesses = Guesses(Settings(throttle_after=5, throttle_max_wait=60), Clock())
    tried = [guesses.begin("203.0.113.9", f"user{n}") for n in range(30)]
    assert tried.count(0) == 20  # four times one account's share, then the address waits
    assert guesses.begin("203.0.113.9", "someone-new") > 0


def test_a_success_takes_back_its_own_count_only():
    guesses = Guesses(Settings(throttle_after=2, throttle_max_wait=60), Clock())
    for _ in range(2):
        assert guesses.begin("192.0.2.1", "alice") == 0
    assert guesses.begin("192.0.2.1", "alice") > 0
    other = Guesses(Settings(throttle_after=2, throttle_max_wait=60), Clock())
    for _ in range(5):  # logins that succeed never add up to a wait
        assert other.begin("192.0.2.1", "alice") == 0
        other.succeeded("192.0.2.1", "alice")


def test_an_ipv6_client_is_counted_by_its_64():
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"


def test_a_forwarded_client_is_believed_from_a_trusted_proxy_only():
    proxies = TrustedProxies(Settings().trusted_proxies)  # loopback by default
    assert "127.0.0.1" in proxies and "::1" in proxies and "::ffff:127.0.0.1" in proxies
    assert "127.0.0.2" not in proxies and "192.0.2.1" not in proxies and "nonsense" not in proxies
    assert proxies.client("192.0.2.1", ["198.51.100.7"]) == "192.0.2.1"  # not a proxy
    assert proxies.client("127.0.0.1", ["198.51.100.7"]) == "198.51.100.7"
    assert proxies.client("127.0.0.1", []) == "127.0.0.1"
    chain = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    # The client may write anything on the left; the proxies append on the right.
    assert chain.client("127.0.0.1", ["203.0.113.1, 198.51.100.7", "10.1.2.3"]) == "198.51.100.7"
    assert chain.client("127.0.0.1", ["[2001:db8::1]:443"]) == "2001:db8::1"


def test_a_proxy_setting_that_is_no_address_is_refused():
    assert Settings(trusted_proxies="10.0.0.0/8, 192.0.2.7").trusted_proxies == [
        "10.0.0.0/8",
        "192.0.2.7",
    ]
    with pytest.raises(ValueError, match="not an IP address or network"):
        Settings(trusted_proxies="proxy.example.org")


def test_a_login_holds_while_its_mode_user_and_session_version_do(tmp_path):
    users = Users(db := tmp_path / "users.sqlite3")
    sessions = SessionVersions(db)
    password = auth.LoginPolicy("password")
    assert sessions.lookup("alice") == (False, "")
    assert not db.exists()  # a lookup never creates the file

    users.add("alice", "correct horse")
    claims = auth.login_claims(password, sessions.lookup("alice")[1])
    assert auth.still_logged_in(password, sessions, "alice", claims)
    assert not auth.still_logged_in(auth.LoginPolicy("none"), sessions, "alice", claims)
    header = auth.LoginPolicy("header", "X-Forwarded-User")
    assert not auth.still_logged_in(header, sessions, "alice", claims)
    assert not auth.still_logged_in(password, sessions, "alice", {**claims, "session": "x"})
    assert not auth.still_logged_in(password, sessions, "alice", {})

    users.logout("alice")
    assert not auth.still_logged_in(password, sessions, "alice", claims)
    claims = auth.login_claims(password, sessions.lookup("alice")[1])
    users.remove("alice")
    assert not auth.still_logged_in(password, sessions, "alice", claims)
    users.add("alice", "correct horse")  # back again: the old cookie does not come back
    assert not auth.still_logged_in(password, sessions, "alice", claims)

    # Header users are not password users; a logout still ends their sessions.
    carol = auth.login_claims(header, sessions.lookup("carol")[1])
    assert auth.still_logged_in(header, sessions, "carol", carol)
    users.logout("carol")
    assert not auth.still_logged_in(header, sessions, "carol", carol)


def test_a_replaced_users_file_is_read_anew(tmp_path):
    users = Users(db := tmp_path / "users.sqlite3")
    sessions = SessionVersions(db)
    users.add("alice", "correct horse")
    before = sessions.lookup("alice")
    db.unlink()
    users.add("alice", "correct horse")
    assert sessions.lookup("alice")[0] and sessions.lookup("alice") != before


async def test_guesses_sent_at_once_are_counted_before_they_are_checked(tmp_path):
    users = Users(tmp_path / "users.sqlite3")
    users.add("alice", "correct horse")
    policy = auth.LoginPolicy("password")
    settings = Settings(throttle_after=3, throttle_max_wait=60)
    login = auth.PasswordLogin(settings, policy, users, clock=Clock())  # the wait cannot pass
    tries = [login.check("alice", f"guess {n}", "192.0.2.1") for n in range(12)]
    results = await asyncio.gather(*tries, return_exceptions=True)
    assert results.count(None) == 3  # only three were checked
    refused = [r for r in results if isinstance(r, auth.TooManyTries)]
    assert len(refused) == 9 and refused[0].retry_after == "1"
    with pytest.raises(auth.TooManyTries):  # the right password waits too
        await login.check("alice", "correct horse", "192.0.2.1")
    claims = await login.check("alice", "correct horse", "198.51.100.7")
    assert claims == {"login": "password", "session": login.sessions.lookup("alice")[1]}
