"""The packet writer of the stranger tests: scapy packets written here, independently of rulegen.prove.captures, so
a proof built from the same typed fields as a rule cannot hide what ordinary traffic would raise."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether


class Capture:
    """Packets with a running clock; TCP sessions with real sequence numbers."""

    def __init__(self, start: float) -> None:
        self.packets: list = []
        self.now = start

    def add(self, packet, after: float = 0.002) -> None:  # noqa: ANN001
        self.now += after
        packet.time = self.now
        self.packets.append(packet)

    def session(self, client: str, server: str, sport: int, dport: int, talk: list[tuple[bool, bytes]]) -> None:
        """Handshake, each message acknowledged, FIN from both sides."""
        seq = {True: 10_000 + sport * 7, False: 90_000 + sport * 3}

        def send(from_client: bool, flags: str, data: bytes = b"") -> None:
            src, dst, sp, dp = (client, server, sport, dport) if from_client else (server, client, dport, sport)
            segment = TCP(sport=sp, dport=dp, flags=flags, seq=seq[from_client],
                          ack=seq[not from_client] if "A" in flags else 0, window=29200)
            packet = Ether() / IP(src=src, dst=dst) / segment
            self.add(packet / data if data else packet)
            seq[from_client] += len(data) + (1 if set(flags) & {"S", "F"} else 0)

        send(True, "S")
        send(False, "SA")
        send(True, "A")
        for from_client, data in talk:
            send(from_client, "PA", data)
            send(not from_client, "A")
        send(True, "FA")
        send(False, "FA")
        send(True, "A")

    def syn(self, client: str, server: str, sport: int, dport: int) -> None:
        """A SYN to a closed port, answered by RST."""
        self.add(Ether() / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="S", seq=7))
        self.add(Ether() / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="RA", seq=0, ack=8))

    def datagram(self, client: str, server: str, sport: int, dport: int, data: bytes, ttl: int = 64) -> None:
        self.add(Ether() / IP(src=client, dst=server, ttl=ttl) / UDP(sport=sport, dport=dport) / data)
