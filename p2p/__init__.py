"""QUIC transport (aioquic sans-IO driven by trio): node identity, framing, channels, gossip, peer manager. Generic over bytes; imports nothing of ours."""
