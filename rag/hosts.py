"""Host names and addresses: the parsing that both the web layer and the model
clients need, kept here so that a model client never imports the web layer."""

from __future__ import annotations

import ipaddress


def host_name(netloc: str) -> str:
    """``[::1]:8000`` -> ``::1``; ``LocalHost.:80`` -> ``localhost``."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    if netloc.count(":") > 1:  # a bare IPv6 address, no port
        return netloc
    return netloc.split(":", 1)[0].rstrip(".")


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    host = host_name(host)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
