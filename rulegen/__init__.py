"""rulegen: compile port threat lore into Suricata, Sigma, iptables and nftables rules."""

__version__ = "0.1.0"
