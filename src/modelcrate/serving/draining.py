"""Socket checks shared by the servers that drain on SIGTERM (the workers and the pipeline's front server)."""

from __future__ import annotations

import select
import socket


def accept_backlog(listening_socket: socket.socket) -> list[socket.socket]:
    """Every connection the kernel completed for the (non-blocking) listening socket, non-blocking: their
    clients may have sent their requests already, and closing the listener would reset them."""
    accepted = []
    while True:
        try:
            client, _ = listening_socket.accept()
        except OSError:  # BlockingIOError once the backlog is empty
            return accepted
        client.setblocking(False)
        accepted.append(client)


def has_unread_bytes(connection: socket.socket) -> bool:
    """Whether the socket holds bytes (or the client's end) the event loop has not read yet."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def cut_off_message(drain_timeout: float, cut_off: int) -> str:
    return (
        f"the drain deadline (MODELCRATE_DRAIN_TIMEOUT={drain_timeout:g} s) cut off {cut_off} request(s) "
        "already received"
    )
