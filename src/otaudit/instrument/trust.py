"""What a request may claim: the allow-lists behind the middleware's trust decisions.

A header is whatever the sender wrote. Two of them matter to an audit record:

- ``X-Forwarded-For`` names the client only as far as the proxies that
  appended to it are the operator's. :func:`client_address` reads it right to
  left, as Werkzeug's ``ProxyFix`` and uvicorn's ``forwarded_allow_ips`` do:
  the socket peer must be a trusted proxy for the header to be read at all,
  and the first hop from the right that is not a trusted proxy is the client.
  With no trusted proxies the socket peer is the client.
- ``baggage`` names an actor (``enduser.id``) only when the request comes from
  a service the operator listed; :func:`is_trusted` answers that question for
  the client address.

Allow-lists are IP addresses or networks (``10.0.0.7``, ``10.0.0.0/8``,
``fd00::/8``); an empty list trusts nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from otaudit.instrument.meta import ConfigError

__all__ = ["Networks", "client_address", "is_trusted", "networks"]

#: A parsed allow-list.
Networks = tuple[IPv4Network | IPv6Network, ...]


def networks(values: Iterable[str] | str, option: str) -> Networks:
    """Parse the allow-list ``option``: addresses or networks, or one comma-separated string.

    Raises :class:`~otaudit.instrument.meta.ConfigError` (a ``ValueError``) naming the first
    entry that is neither (``*`` included: list the networks you mean).
    """
    items = values.split(",") if isinstance(values, str) else list(values)
    out: list[IPv4Network | IPv6Network] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{option}: expected an IP address or network, got {item!r}")
        try:
            out.append(ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"{option}: expected an IP address or network such as 10.0.0.7 or "
                f"10.0.0.0/8, got {item!r}"
            ) from exc
    return tuple(out)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    """The IP address in a peer or hop: bare, ``[v6]:port`` or ``v4:port``; None if it is none."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        found = ip_address(text)
    except ValueError:
        return None
    if isinstance(found, IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def is_trusted(address: str | None, allowed: Networks) -> bool:
    """Whether ``address`` (a peer or a hop) lies in one of the ``allowed`` networks."""
    if address is None or not allowed:
        return False
    found = _address(address)
    return found is not None and any(found in network for network in allowed)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Networks) -> str | None:
    """The client's address: ``X-Forwarded-For`` read right to left past trusted ``proxies``.

    1. The socket ``peer`` is the client unless it is a trusted proxy and the
       request carries ``X-Forwarded-For``: then nobody vouches for the header.
    2. Walk the hops from the right (the one the nearest proxy appended); each
       hop that is a trusted proxy passed the request on, so keep walking. The
       first hop that is not one is the client, as the last trusted proxy saw it.
    3. An empty hop ends the walk at the nearest trusted address; a header of
       trusted proxies only names its leftmost one.
    """
    if peer is None or not forwarded_for or not is_trusted(peer, proxies):
        return peer
    nearest = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            return nearest
        if not is_trusted(hop, proxies):
            found = _address(hop)
            return hop if found is None else str(found)
        nearest = hop
    return nearest
