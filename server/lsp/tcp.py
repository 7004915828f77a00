"""TCP mode that serves only its own user.

Binding to loopback keeps the network out, not the other users of this machine: any local
account can connect to 127.0.0.1. Editors speak plain LSP over the socket (no handshake we could
add a token to), so the check is on who holds the other end: on Linux, the kernel lists every
TCP socket of this network namespace with its owner's uid in ``/proc/net/tcp`` and ``tcp6``.
A connection whose peer socket belongs to another uid is closed before a byte is read, and it
does not count as the session's client (its end must not stop the server).

A peer not found there is on another machine (or in another network namespace): refused
unless ``--allow-remote`` was given, which the host check asks for anyway when listening on
anything but loopback. One client at a time: LSP is one editor per server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

_SOCKET_TABLES: Final = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_UID_COLUMN: Final = 7  # sl, local, remote, state, queues, timer, retransmits, uid, ...

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TcpRefused(ValueError):
    """TCP mode cannot run as asked; the message says why and what to do."""


def check_listen_address(host: str, *, allow_remote: bool) -> None:
    """Refuse to listen beyond loopback without ``--allow-remote``, or to serve where the
    peer's user cannot be checked."""
    if not allow_remote and not _is_loopback(host):
        raise TcpRefused(
            f"--tcp {host}: not a loopback address. Anyone who can reach it could drive the "
            "server (read your code, run your tools); pass --allow-remote to accept that, or "
            "use 127.0.0.1 (another user of this machine is refused there)"
        )
    if not allow_remote and not _SOCKET_TABLES[0].exists():
        raise TcpRefused(
            f"TCP mode checks who connects through {_SOCKET_TABLES[0]}, which this system "
            "lacks; use stdio (the default), or --allow-remote to accept any client"
        )


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {_address(str(info[4][0])) for info in infos}
    return bool(addresses) and all(a is not None and a.is_loopback for a in addresses)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _table_forms(host: str, port: int) -> set[str]:
    """How the kernel writes ``host:port`` in the socket tables: each 32-bit word of the
    address as a host-order hex number, then the port; IPv4 also as mapped into IPv6."""
    address = _address(host)
    if address is None:
        return set()
    forms = {address}
    if isinstance(address, ipaddress.IPv4Address):
        forms.add(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed))
    return {
        "".join(
            f"{int.from_bytes(a.packed[i : i + 4], sys.byteorder):08X}"
            for i in range(0, len(a.packed), 4)
        )
        + f":{port:04X}"
        for a in forms
    }


def peer_uid(sock: socket.socket) -> int | None:
    """The uid owning the other end of a TCP connection, when it is on this machine (in this
    network namespace); None when it is not found there."""
    peer_host, peer_port = sock.getpeername()[:2]
    own_host, own_port = sock.getsockname()[:2]
    peer_forms, own_forms = _table_forms(peer_host, peer_port), _table_forms(own_host, own_port)
    for table in _SOCKET_TABLES:
        try:
            rows = table.read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # The peer's own socket: local is its address, remote is ours.
            if len(fields) > _UID_COLUMN and fields[1] in peer_forms and fields[2] in own_forms:
                return int(fields[_UID_COLUMN])
    return None


class TcpGate:
    """Decides which connections become the session's client (``MemlspServer.start_tcp``'s
    ``admit``): the peer's user must be ours, and only one client is served."""

    def __init__(self, *, allow_remote: bool) -> None:
        self.allow_remote = allow_remote
        self.busy = False

    def admit(self, writer: asyncio.StreamWriter) -> bool:
        """Whether to serve this connection; a refusal is logged (the caller closes it)."""
        refusal = self.refusal(writer.get_extra_info("socket"))
        peer = writer.get_extra_info("peername")
        if refusal is not None:
            log.warning("refused a TCP connection from %s: %s", peer, refusal)
            return False
        self.busy = True
        log.info("TCP client connected from %s", peer)
        return True

    def refusal(self, sock: socket.socket | None) -> str | None:
        if sock is None:
            return "no socket to check"
        if self.busy:
            return "a client is already connected (one editor per server)"
        try:
            uid = peer_uid(sock)
        except OSError as exc:  # the peer went away meanwhile
            return f"its user cannot be checked ({exc})"
        if uid is None:
            return None if self.allow_remote else "it is not on this machine (see --allow-remote)"
        if uid != os.getuid():
            return f"it belongs to uid {uid}, not to this server's user (uid {os.getuid()})"
        return None
