"""Tendermint-style BFT: pure state machine, vote sets, proposer rotation, sign-state guard, WAL, evidence, block sync logic. Imports chain and storage."""
