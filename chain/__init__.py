"""Wire types and canonical encoding, crypto, the four lanes' transactions, blocks and headers, state transition, mempool rules. Imports vm and storage."""
