"""LevelDB (plyvel) stores: authenticated state tree with proofs, block store, key layouts. Generic over bytes; imports nothing of ours."""
