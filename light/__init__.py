"""Light client: header verification, proof checking, verified queries and a verifying proxy. Imports chain, consensus and storage's pure verifier."""
