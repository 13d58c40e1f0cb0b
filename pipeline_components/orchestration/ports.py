"""Free loopback ports for servers this project starts (the Airflow UI's log server, the latency
benchmark's model server, test servers): bound, read, released; the server binds next."""
import socket
from typing import List


def free_ports(n: int = 1) -> List[int]:
    """n distinct ports: all n sockets are held until every port is read."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
