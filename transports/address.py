"""Address parsing: ``scheme://location`` strings name every endpoint."""

from __future__ import annotations

__all__ = ["format_host_port", "parse_address", "split_host_port"]


def parse_address(address: str) -> tuple[str, str]:
    """Split ``"tcp://127.0.0.1:5000"`` into ``("tcp", "127.0.0.1:5000")``.

    Only the shape is checked here; each backend validates its own location.
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be a str like 'tcp://host:port', got {address!r}")
    scheme, sep, location = address.partition("://")
    if not sep or not scheme:
        raise ValueError(
            f"malformed address {address!r}: expected 'scheme://location', "
            "e.g. 'tcp://127.0.0.1:5000', 'unix:///tmp/x.sock' or 'inproc://name'"
        )
    if not scheme.isascii() or not scheme.isalnum() or not scheme[0].isalpha():
        raise ValueError(f"malformed address {address!r}: bad scheme {scheme!r}")
    return scheme.lower(), location


def split_host_port(address: str, location: str) -> tuple[str, int]:
    """Parse ``host:port`` / ``[v6]:port``; ``address`` is only used in messages."""
    if location.startswith("["):
        host, sep, rest = location[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"malformed address {address!r}: expected '[ipv6]:port'")
        port_s = rest[1:]
    else:
        host, sep, port_s = location.rpartition(":")
        if not sep:
            raise ValueError(f"malformed address {address!r}: missing ':port'")
        if ":" in host:
            raise ValueError(f"malformed address {address!r}: put IPv6 hosts in brackets")
    if not host:
        raise ValueError(f"malformed address {address!r}: missing host")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"malformed address {address!r}: port must be 0-65535")
    return host, int(port_s)


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
