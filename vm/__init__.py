"""Tiny deterministic VM for key-resale rules: bytecode, verifier, gas, interpreter, assembler. Imports nothing of ours."""
