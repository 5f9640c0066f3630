"""The running daemon: trio wiring, config, JSON-RPC, metrics, the blackhole CLI. Imports everything."""
