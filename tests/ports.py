"""Free loopback ports for tests that start servers (bound, read, released: the server binds next)."""
import socket
from typing import List


def free_ports(n: int = 1) -> List[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
