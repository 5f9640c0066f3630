"""Genesis schema, the default devnet genesis, testnet generation, forking and export. Imports chain."""
