"""``X-Forwarded-For`` / ``X-Forwarded-Proto`` from a trusted proxy, as uvicorn reads them.

uvicorn (``proxy_headers``, on by default) sets the scope's ``client`` and ``scheme`` from these
headers when the connection comes from a host in ``FORWARDED_ALLOW_IPS`` (default
``127.0.0.1,::1``: the pod's sidecar). Behind a sidecar every connection comes from 127.0.0.1,
so without this the access log and Flask's ``REMOTE_ADDR`` name the sidecar, not the client.
The connection only calls here for a request that has one of the headers.
"""

from __future__ import annotations

import functools
import ipaddress
import os

#: Env var (uvicorn's): the hosts trusted to set the forwarded headers, comma-separated IP
#: addresses, networks (``10.0.0.0/8``) or ``*`` for any.
ALLOW_ENV = "FORWARDED_ALLOW_IPS"
DEFAULT_ALLOWED = "127.0.0.1,::1"
#: ``X-Forwarded-Proto`` values taken as the scheme (others are ignored).
SCHEMES = frozenset(("http", "https", "ws", "wss"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The hosts whose forwarded headers are believed (``FORWARDED_ALLOW_IPS``)."""

    def __init__(self, allowed: str) -> None:
        entries = [entry.strip() for entry in allowed.split(",") if entry.strip()]
        self.anyone = "*" in entries
        self.addresses: set[Address] = set()
        self.networks: set[Network] = set()
        self.names: set[str] = set()  # not an IP (a unix socket's name): compared as text
        for entry in entries:
            try:
                if "/" in entry:
                    self.networks.add(ipaddress.ip_network(entry, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(entry))
            except ValueError:
                self.names.add(entry)
        # Forwarded hosts are the client's to choose: a bounded cache.
        self.trusts = functools.lru_cache(maxsize=1024)(self._trusts)

    @classmethod
    def from_env(cls) -> TrustedProxies:
        return cls(os.environ.get(ALLOW_ENV, DEFAULT_ALLOWED))

    def _trusts(self, host: str) -> bool:
        if self.anyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names
        return address in self.addresses or any(address in net for net in self.networks)

    def client(self, forwarded_for: str) -> tuple[str, int]:
        """The client in an ``X-Forwarded-For`` chain: the last host not trusted (each proxy
        appends the host it heard from); the first when all are trusted."""
        hosts = [host.strip() for host in forwarded_for.split(",")]
        if not self.anyone:
            for entry in reversed(hosts):
                host, port = host_and_port(entry)
                if not self.trusts(host):
                    return host, port
        return host_and_port(hosts[0])


def host_and_port(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as (host, port); port 0 when there is
    none, and anything malformed as (value, 0) so that no trust check is fooled by it."""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return value, 0
        return host, _port(rest[1:]) if rest else 0
    if value.count(":") == 1:
        host, port = value.split(":")
        return (host, int(port)) if port.isdigit() else (value, 0)
    return value, 0


def _port(text: str) -> int:
    return int(text) if text.isdigit() else 0
