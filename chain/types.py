"""Consensus wire types: votes, proposals, commits, validators, evidence, headers, blocks.

Theory of operation. Every type is a frozen slotted dataclass whose wire form is
one canonical msgpack array of its fields in declaration order (see
docs/spec.md for the table of each). ``encode()`` packs; ``decode_untrusted``
unpacks with a size limit, checks every field's type and range with the
``take_*`` helpers and returns the value, raising only
:class:`chain.errors.DecodeError`. Nested records are nested arrays, except the
block's lanes and evidence, which are arrays of pre-packed bytes so a block
decodes in one cheap step and transaction hashes are hashes of those bytes.

Signatures cover ``crypto.digest(DOMAIN_x, chain_id, pack(signed fields))``: a
vote's signed fields are all of its fields but the signature; a commit's
signatures are precommits, verified by rebuilding each precommit vote.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Final

from chain import crypto
from chain.crypto import DOMAIN_PROPOSAL, DOMAIN_VOTE, PrivateKey
from chain.encoding import (
    INT63_MAX,
    pack,
    pack_trusted,
    take_array,
    take_bytes,
    take_bytes_list,
    take_int,
    take_str,
    unpack_untrusted,
)
from chain.errors import (
    DecodeError,
    InvalidBlock,
    InvalidCommit,
    InvalidEvidence,
    InvalidValidatorSet,
    UsageError,
)
from chain.merkle import EMPTY_ROOT, merkle_root

Height = int
"""A block height, >= 1."""
Round = int
"""A consensus round within a height, >= 0."""
TimeMs = int
"""Milliseconds since the Unix epoch, UTC."""
Power = int
"""Voting power of a validator, >= 1."""

HASH_SIZE: Final = 32
MAX_ROUND: Final = 2**31 - 1
#: Largest index of a validator in a set (the set has at most this many + 1 members).
MAX_VALIDATOR_INDEX: Final = 65_535
#: Largest power of one validator and of a whole set (as CometBFT: int64 max / 8).
MAX_TOTAL_POWER: Final = 2**60
#: Hard caps of the decoders, above any parameter value (parameters are checked by the state).
MAX_VOTE_BYTES: Final = 256
MAX_PROPOSAL_BYTES: Final = 256
MAX_COMMIT_BYTES: Final = 128 + (MAX_VALIDATOR_INDEX + 1) * 96
MAX_HEADER_BYTES: Final = 1024
MAX_EVIDENCE_BYTES: Final = 2 * MAX_VOTE_BYTES + 16
MAX_BLOCK_BYTES: Final = 104_857_600
MAX_LANE_TXS: Final = 100_000
MAX_EVIDENCE_COUNT: Final = 10_000
MAX_CHAIN_ID_BYTES: Final = crypto.MAX_CHAIN_ID_BYTES
#: Lane names in header and block order.
LANES: Final = ("cards", "seeders", "keys", "txs")


class VoteType(IntEnum):
    """The two kinds of consensus vote."""

    PREVOTE = 1
    PRECOMMIT = 2


def _hash(obj: Any, name: str, *, allow_empty: bool = False) -> bytes:
    return take_bytes(obj, name, sizes=(0, HASH_SIZE) if allow_empty else (HASH_SIZE,))


def _chain_id(obj: Any, name: str) -> str:
    value = take_str(obj, name, min_len=1, max_len=MAX_CHAIN_ID_BYTES)
    if not crypto.is_valid_chain_id(value):
        raise DecodeError(f"{name}: {value!r} is not a valid chain id")
    return value


# --- votes and proposals ---


@dataclass(frozen=True, slots=True)
class Vote:
    """A prevote or precommit of one validator for a block (or nil) at (height, round)."""

    type: VoteType
    """PREVOTE or PRECOMMIT."""
    height: Height
    """Height voted on."""
    round: Round
    """Round voted in."""
    block_hash: bytes
    """Hash of the block voted for; b"" means nil."""
    timestamp_ms: TimeMs
    """The voter's clock when voting; precommit times make the next block's time."""
    validator_index: int
    """The voter's index in the validator set of ``height``."""
    signature: bytes = b""
    """Ed25519 signature of :meth:`signing_digest`; b"" only before signing."""

    def signed_fields(self) -> list[Any]:
        return [
            int(self.type),
            self.height,
            self.round,
            self.block_hash,
            self.timestamp_ms,
            self.validator_index,
        ]

    def signing_digest(self, chain_id: str) -> bytes:
        """digest(DOMAIN_VOTE, chain_id, pack(fields but signature))."""
        return crypto.digest(DOMAIN_VOTE, chain_id, pack_trusted(self.signed_fields()))

    def signed(self, key: PrivateKey, chain_id: str) -> Vote:
        """This vote with its signature by ``key``."""
        return replace(self, signature=key.sign(self.signing_digest(chain_id)))

    def verify(self, chain_id: str, pubkey: bytes) -> bool:
        """True if the signature is ``pubkey``'s over this vote."""
        return crypto.verify(pubkey, self.signature, self.signing_digest(chain_id))

    @property
    def is_nil(self) -> bool:
        return self.block_hash == b""

    def to_list(self) -> list[Any]:
        return [*self.signed_fields(), self.signature]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    def hash(self) -> bytes:
        """BLAKE3 of the encoding: the vote's id in gossip and evidence."""
        return crypto.hash_bytes(self.encode())

    @classmethod
    def from_list(cls, obj: Any, name: str = "vote") -> Vote:
        f = take_array(obj, name, 7)
        vtype = take_int(f[0], f"{name}.type", 1, 2)
        return cls(
            VoteType(vtype),
            take_int(f[1], f"{name}.height", 1),
            take_int(f[2], f"{name}.round", 0, MAX_ROUND),
            _hash(f[3], f"{name}.block_hash", allow_empty=True),
            take_int(f[4], f"{name}.timestamp_ms", 0),
            take_int(f[5], f"{name}.validator_index", 0, MAX_VALIDATOR_INDEX),
            take_bytes(f[6], f"{name}.signature", size=crypto.SIGNATURE_SIZE),
        )

    @classmethod
    def decode_untrusted(cls, data: bytes) -> Vote:
        """Decode a signed vote; raises :class:`DecodeError`."""
        return cls.from_list(unpack_untrusted(data, MAX_VOTE_BYTES))


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposer's signed proposal of a block for (height, round)."""

    height: Height
    """Height proposed for."""
    round: Round
    """Round proposed in."""
    pol_round: int
    """Round of the proof-of-lock the block was re-proposed from; -1 if none (< round)."""
    block_hash: bytes
    """Hash of the proposed block."""
    timestamp_ms: TimeMs
    """The proposer's clock when proposing."""
    proposer_index: int
    """The proposer's index in the validator set."""
    signature: bytes = b""
    """Ed25519 signature of :meth:`signing_digest`; b"" only before signing."""

    def signed_fields(self) -> list[Any]:
        return [
            self.height,
            self.round,
            self.pol_round,
            self.block_hash,
            self.timestamp_ms,
            self.proposer_index,
        ]

    def signing_digest(self, chain_id: str) -> bytes:
        """digest(DOMAIN_PROPOSAL, chain_id, pack(fields but signature))."""
        return crypto.digest(DOMAIN_PROPOSAL, chain_id, pack_trusted(self.signed_fields()))

    def signed(self, key: PrivateKey, chain_id: str) -> Proposal:
        return replace(self, signature=key.sign(self.signing_digest(chain_id)))

    def verify(self, chain_id: str, pubkey: bytes) -> bool:
        return crypto.verify(pubkey, self.signature, self.signing_digest(chain_id))

    def to_list(self) -> list[Any]:
        return [*self.signed_fields(), self.signature]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    @classmethod
    def from_list(cls, obj: Any, name: str = "proposal") -> Proposal:
        f = take_array(obj, name, 7)
        round_ = take_int(f[1], f"{name}.round", 0, MAX_ROUND)
        return cls(
            take_int(f[0], f"{name}.height", 1),
            round_,
            take_int(f[2], f"{name}.pol_round", -1, round_ - 1),
            _hash(f[3], f"{name}.block_hash"),
            take_int(f[4], f"{name}.timestamp_ms", 0),
            take_int(f[5], f"{name}.proposer_index", 0, MAX_VALIDATOR_INDEX),
            take_bytes(f[6], f"{name}.signature", size=crypto.SIGNATURE_SIZE),
        )

    @classmethod
    def decode_untrusted(cls, data: bytes) -> Proposal:
        """Decode a signed proposal; raises :class:`DecodeError`."""
        return cls.from_list(unpack_untrusted(data, MAX_PROPOSAL_BYTES))


# --- commits ---


@dataclass(frozen=True, slots=True)
class CommitSig:
    """One validator's precommit for the committed block, reduced to what differs per voter."""

    validator_index: int
    """The signer's index in the validator set of the commit's height."""
    timestamp_ms: TimeMs
    """The precommit's timestamp (part of what was signed)."""
    signature: bytes
    """Signature of the precommit Vote(PRECOMMIT, height, round, block_hash, timestamp_ms, validator_index)."""

    def to_list(self) -> list[Any]:
        return [self.validator_index, self.timestamp_ms, self.signature]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    @classmethod
    def from_list(cls, obj: Any, name: str = "commit_sig") -> CommitSig:
        f = take_array(obj, name, 3)
        return cls(
            take_int(f[0], f"{name}.validator_index", 0, MAX_VALIDATOR_INDEX),
            take_int(f[1], f"{name}.timestamp_ms", 0),
            take_bytes(f[2], f"{name}.signature", size=crypto.SIGNATURE_SIZE),
        )

    @classmethod
    def decode_untrusted(cls, data: bytes) -> CommitSig:
        return cls.from_list(unpack_untrusted(data, 128))


@dataclass(frozen=True, slots=True)
class Commit:
    """+2/3 of precommits for one block: the proof that it is committed."""

    height: Height
    """Height of the committed block."""
    round: Round
    """Round in which it was committed."""
    block_hash: bytes
    """Hash of the committed block."""
    signatures: tuple[CommitSig, ...]
    """Precommits for the block, strictly ascending by validator_index (absent voters left out)."""

    def vote_for(self, sig: CommitSig) -> Vote:
        """The precommit that ``sig`` signed."""
        return Vote(
            VoteType.PRECOMMIT,
            self.height,
            self.round,
            self.block_hash,
            sig.timestamp_ms,
            sig.validator_index,
            sig.signature,
        )

    @classmethod
    def from_votes(cls, votes: Iterable[Vote]) -> Commit:
        """Build a commit from precommits for one block (any order); :class:`UsageError` if mixed."""
        vs = sorted(votes, key=lambda v: v.validator_index)
        if not vs:
            raise UsageError("a commit needs at least one precommit")
        first = vs[0]
        for v in vs:
            if (v.type, v.height, v.round, v.block_hash) != (
                VoteType.PRECOMMIT,
                first.height,
                first.round,
                first.block_hash,
            ) or v.is_nil:
                raise UsageError("a commit is built from non-nil precommits of one block and round")
        return cls(
            first.height,
            first.round,
            first.block_hash,
            tuple(CommitSig(v.validator_index, v.timestamp_ms, v.signature) for v in vs),
        )

    def to_list(self) -> list[Any]:
        return [self.height, self.round, self.block_hash, [s.to_list() for s in self.signatures]]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    def hash(self) -> bytes:
        """Merkle root over [pack([height, round, block_hash]), each CommitSig encoding]."""
        head = pack_trusted([self.height, self.round, self.block_hash])
        return merkle_root([head, *(s.encode() for s in self.signatures)])

    @classmethod
    def from_list(cls, obj: Any, name: str = "commit") -> Commit:
        f = take_array(obj, name, 4)
        sigs_raw = take_array(f[3], f"{name}.signatures", max_len=MAX_VALIDATOR_INDEX + 1)
        sigs = tuple(
            CommitSig.from_list(s, f"{name}.signatures[{i}]") for i, s in enumerate(sigs_raw)
        )
        for i in range(1, len(sigs)):
            if sigs[i].validator_index <= sigs[i - 1].validator_index:
                raise DecodeError(f"{name}.signatures: validator indices not strictly ascending")
        return cls(
            take_int(f[0], f"{name}.height", 1),
            take_int(f[1], f"{name}.round", 0, MAX_ROUND),
            _hash(f[2], f"{name}.block_hash"),
            sigs,
        )

    @classmethod
    def decode_untrusted(cls, data: bytes) -> Commit:
        """Decode a commit; raises :class:`DecodeError`."""
        return cls.from_list(unpack_untrusted(data, MAX_COMMIT_BYTES))


def commit_hash(commit: Commit | None) -> bytes:
    """The header's last_commit_hash: the commit's hash, or EMPTY_ROOT for none."""
    return EMPTY_ROOT if commit is None else commit.hash()


# --- validators ---


@dataclass(frozen=True, slots=True)
class Validator:
    """A validator: its consensus key and voting power."""

    pubkey: bytes
    """Ed25519 public key (32 bytes); also its account address."""
    power: Power
    """Voting power, 1..MAX_TOTAL_POWER."""

    def to_list(self) -> list[Any]:
        return [self.pubkey, self.power]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    @classmethod
    def from_list(cls, obj: Any, name: str = "validator") -> Validator:
        f = take_array(obj, name, 2)
        return cls(
            take_bytes(f[0], f"{name}.pubkey", size=crypto.PUBKEY_SIZE),
            take_int(f[1], f"{name}.power", 1, MAX_TOTAL_POWER),
        )

    @classmethod
    def decode_untrusted(cls, data: bytes) -> Validator:
        return cls.from_list(unpack_untrusted(data, 64))


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The validators of one height, sorted by pubkey (strictly ascending).

    Construction checks the structure and raises :class:`InvalidValidatorSet`.
    """

    validators: tuple[Validator, ...]
    """Members, strictly ascending by pubkey."""
    total_power: int = field(init=False, repr=False, compare=False)
    """Sum of the members' powers."""
    _index: dict[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vals = tuple(self.validators)
        if not vals:
            raise InvalidValidatorSet("a validator set has at least one member")
        if len(vals) > MAX_VALIDATOR_INDEX + 1:
            raise InvalidValidatorSet(
                f"a validator set has at most {MAX_VALIDATOR_INDEX + 1} members"
            )
        total = 0
        index: dict[bytes, int] = {}
        prev = b""
        for i, v in enumerate(vals):
            if not isinstance(v, Validator):
                raise InvalidValidatorSet(f"member {i} is not a Validator")
            if type(v.pubkey) is not bytes or len(v.pubkey) != crypto.PUBKEY_SIZE:
                raise InvalidValidatorSet(f"member {i}: pubkey must be 32 bytes")
            if type(v.power) is not int or not 1 <= v.power <= MAX_TOTAL_POWER:
                raise InvalidValidatorSet(f"member {i}: power must be in [1, {MAX_TOTAL_POWER}]")
            if v.pubkey <= prev:
                raise InvalidValidatorSet("members must be strictly ascending by pubkey")
            prev = v.pubkey
            total += v.power
            index[v.pubkey] = i
        if total > MAX_TOTAL_POWER:
            raise InvalidValidatorSet(f"total power {total} exceeds {MAX_TOTAL_POWER}")
        object.__setattr__(self, "validators", vals)
        object.__setattr__(self, "total_power", total)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_unsorted(cls, validators: Iterable[Validator]) -> ValidatorSet:
        """Build a set from members in any order (duplicates still rejected)."""
        return cls(tuple(sorted(validators, key=lambda v: v.pubkey)))

    def __len__(self) -> int:
        return len(self.validators)

    def index_of(self, pubkey: bytes) -> int | None:
        """The member index of ``pubkey``, or None if it is not a member."""
        return self._index.get(pubkey)

    def get(self, index: int) -> Validator | None:
        """The member at ``index``, or None if out of range."""
        if type(index) is int and 0 <= index < len(self.validators):
            return self.validators[index]
        return None

    def hash(self) -> bytes:
        """Merkle root over the members' encodings (the header's validators_hash)."""
        return merkle_root([v.encode() for v in self.validators])

    def to_list(self) -> list[Any]:
        return [v.to_list() for v in self.validators]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    @classmethod
    def from_list(cls, obj: Any, name: str = "validators") -> ValidatorSet:
        raw = take_array(obj, name, max_len=MAX_VALIDATOR_INDEX + 1)
        members = tuple(Validator.from_list(v, f"{name}[{i}]") for i, v in enumerate(raw))
        try:
            return cls(members)
        except InvalidValidatorSet as exc:
            raise DecodeError(f"{name}: {exc}") from exc

    @classmethod
    def decode_untrusted(cls, data: bytes) -> ValidatorSet:
        return cls.from_list(unpack_untrusted(data, 16 + (MAX_VALIDATOR_INDEX + 1) * 48))

    def _check_commit_shape(
        self, commit: Commit, height: int | None, block_hash: bytes | None
    ) -> None:
        if height is not None and commit.height != height:
            raise InvalidCommit(f"commit is for height {commit.height}, expected {height}")
        if block_hash is not None and commit.block_hash != block_hash:
            raise InvalidCommit("commit is for another block")
        if len(commit.block_hash) != HASH_SIZE:
            raise InvalidCommit("commit block hash must be 32 bytes")
        prev = -1
        for s in commit.signatures:
            if s.validator_index <= prev:
                raise InvalidCommit("commit signatures not strictly ascending by validator index")
            prev = s.validator_index
        if prev >= len(self.validators):
            raise InvalidCommit(
                f"commit signer index {prev} outside a set of {len(self.validators)}"
            )

    def verify_commit(
        self,
        chain_id: str,
        commit: Commit,
        *,
        height: int | None = None,
        block_hash: bytes | None = None,
    ) -> None:
        """Check that ``commit`` carries +2/3 of this set's power; raise :class:`InvalidCommit`.

        Full verification, for the chain and block sync: EVERY signature in
        the commit is verified (a commit that goes into a block must not carry
        a single bad signature), then the signed power must exceed 2/3 of the
        total. Optionally also checks the commit's height and block hash.
        Cost: one Ed25519 verification per signature.
        """
        self._check_commit_shape(commit, height, block_hash)
        signed = 0
        for s in commit.signatures:
            v = self.validators[s.validator_index]
            if not crypto.verify(
                v.pubkey, s.signature, commit.vote_for(s).signing_digest(chain_id)
            ):
                raise InvalidCommit(f"bad signature of validator {s.validator_index}")
            signed += v.power
        if signed * 3 <= self.total_power * 2:
            raise InvalidCommit(f"signed power {signed} is not more than 2/3 of {self.total_power}")

    def verify_commit_light(
        self,
        chain_id: str,
        commit: Commit,
        trust_numerator: int = 2,
        trust_denominator: int = 3,
        *,
        signers: ValidatorSet | None = None,
    ) -> None:
        """Check that more than trust_numerator/trust_denominator of THIS set's power signed.

        Light-client verification: signatures are verified in order only until
        the threshold is passed, then it stops (a bad signature past that point
        goes unnoticed, which is sound for a light client: the signatures
        counted are valid). Raises :class:`InvalidCommit`.

        ``signers`` is the validator set the commit's indices refer to (the
        set of the commit's height). None means this set signed it (adjacent
        headers; the usual threshold is 2/3). For skipping verification, pass
        the new header's set as ``signers`` and call this on the trusted set
        with trust level 1/3: each signer is looked up by pubkey in this set,
        and only members' power counts. The fraction must lie in [1/3, 1];
        otherwise :class:`UsageError`.
        """
        if (
            type(trust_numerator) is not int
            or type(trust_denominator) is not int
            or not 0 < trust_numerator <= trust_denominator
            or trust_numerator * 3 < trust_denominator
        ):
            raise UsageError("trust level must be a fraction in [1/3, 1]")
        sign_set = self if signers is None else signers
        sign_set._check_commit_shape(commit, None, None)
        needed = self.total_power * trust_numerator
        counted = 0
        for s in commit.signatures:
            v = sign_set.validators[s.validator_index]
            if signers is None:
                power = v.power
            else:
                mine = self.index_of(v.pubkey)
                if mine is None:
                    continue
                power = self.validators[mine].power
            if not crypto.verify(
                v.pubkey, s.signature, commit.vote_for(s).signing_digest(chain_id)
            ):
                raise InvalidCommit(f"bad signature of validator {s.validator_index}")
            counted += power
            if counted * trust_denominator > needed:
                return
        raise InvalidCommit(
            f"signed power {counted} is not more than {trust_numerator}/{trust_denominator} "
            f"of {self.total_power}"
        )


# --- evidence ---

EVIDENCE_DUPLICATE_VOTE: Final = 1


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    """Proof that a validator signed two different votes for one (height, round, type).

    Canonical form: ``vote_a.block_hash < vote_b.block_hash`` (bytewise), so one
    equivocation has exactly one encoding. Wire form:
    ``[EVIDENCE_DUPLICATE_VOTE, vote_a, vote_b]``.
    """

    vote_a: Vote
    """The vote with the smaller block hash (nil, b"", sorts first)."""
    vote_b: Vote
    """The vote with the larger block hash."""

    @classmethod
    def from_votes(cls, one: Vote, two: Vote) -> DuplicateVoteEvidence:
        """Order two conflicting votes canonically."""
        return cls(one, two) if one.block_hash < two.block_hash else cls(two, one)

    @property
    def height(self) -> Height:
        return self.vote_a.height

    @property
    def validator_index(self) -> int:
        return self.vote_a.validator_index

    def to_list(self) -> list[Any]:
        return [EVIDENCE_DUPLICATE_VOTE, self.vote_a.to_list(), self.vote_b.to_list()]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    def hash(self) -> bytes:
        return crypto.hash_bytes(self.encode())

    def verify(self, chain_id: str, valset: ValidatorSet) -> Validator:
        """Check the evidence against the set of its height; return the guilty validator.

        Raises :class:`InvalidEvidence`. The evidence's age (against
        ``evidence_max_age_heights``) is the state transition's check.
        """
        a, b = self.vote_a, self.vote_b
        if (a.type, a.height, a.round, a.validator_index) != (
            b.type,
            b.height,
            b.round,
            b.validator_index,
        ):
            raise InvalidEvidence("votes differ in height, round, type or validator")
        if a.block_hash == b.block_hash:
            raise InvalidEvidence("votes are for the same block")
        if not a.block_hash < b.block_hash:
            raise InvalidEvidence("votes are not in canonical order")
        v = valset.get(a.validator_index)
        if v is None:
            raise InvalidEvidence(f"validator index {a.validator_index} outside the set")
        if not a.verify(chain_id, v.pubkey) or not b.verify(chain_id, v.pubkey):
            raise InvalidEvidence("bad signature on a vote of the evidence")
        return v

    @classmethod
    def from_list(cls, obj: Any, name: str = "evidence") -> DuplicateVoteEvidence:
        f = take_array(obj, name, 3)
        take_int(f[0], f"{name}.kind", EVIDENCE_DUPLICATE_VOTE, EVIDENCE_DUPLICATE_VOTE)
        a = Vote.from_list(f[1], f"{name}.vote_a")
        b = Vote.from_list(f[2], f"{name}.vote_b")
        if not a.block_hash < b.block_hash:
            raise DecodeError(
                f"{name}: votes not in canonical order (vote_a.block_hash < vote_b.block_hash)"
            )
        return cls(a, b)

    @classmethod
    def decode_untrusted(cls, data: bytes) -> DuplicateVoteEvidence:
        """Decode duplicate-vote evidence; raises :class:`DecodeError`."""
        return cls.from_list(unpack_untrusted(data, MAX_EVIDENCE_BYTES))


Evidence = DuplicateVoteEvidence
"""Every kind of evidence (one so far; the first array element names the kind)."""


def decode_evidence_untrusted(data: bytes) -> Evidence:
    """Decode any kind of evidence from a block's evidence list."""
    return DuplicateVoteEvidence.decode_untrusted(data)


# --- headers and blocks ---


@dataclass(frozen=True, slots=True)
class Header:
    """A block header: commits to the previous block, the lanes, the validators and the state."""

    chain_id: str
    """The chain's id (1..50 ASCII bytes)."""
    height: Height
    """Height of this block."""
    time_ms: TimeMs
    """BFT time (see :func:`compute_block_time`); the genesis time at the initial height."""
    prev_block_hash: bytes
    """Hash of the previous block; b"" at the initial height."""
    last_commit_hash: bytes
    """:func:`commit_hash` of the block's last_commit (EMPTY_ROOT if none)."""
    cards_root: bytes
    """Merkle root of the cards lane's transaction hashes."""
    seeders_root: bytes
    """Merkle root of the seeders lane's transaction hashes."""
    keys_root: bytes
    """Merkle root of the keys lane's transaction hashes."""
    txs_root: bytes
    """Merkle root of the txs lane's transaction hashes."""
    evidence_hash: bytes
    """Merkle root of the encoded evidence items."""
    validators_hash: bytes
    """Hash of the validator set that signs this block."""
    next_validators_hash: bytes
    """Hash of the validator set of the next height."""
    app_hash: bytes
    """State root AFTER applying this block."""
    proposer: bytes
    """Public key of the validator that proposed the block."""

    def to_list(self) -> list[Any]:
        return [
            self.chain_id,
            self.height,
            self.time_ms,
            self.prev_block_hash,
            self.last_commit_hash,
            self.cards_root,
            self.seeders_root,
            self.keys_root,
            self.txs_root,
            self.evidence_hash,
            self.validators_hash,
            self.next_validators_hash,
            self.app_hash,
            self.proposer,
        ]

    def encode(self) -> bytes:
        return pack(self.to_list())

    def hash(self) -> bytes:
        """BLAKE3 of the header's encoding: the block hash."""
        return crypto.hash_bytes(self.encode())

    def lane_root(self, lane: str) -> bytes:
        """The root of ``lane`` (one of LANES)."""
        roots = {
            "cards": self.cards_root,
            "seeders": self.seeders_root,
            "keys": self.keys_root,
            "txs": self.txs_root,
        }
        if lane not in roots:
            raise UsageError(f"no lane {lane!r}")
        return roots[lane]

    @classmethod
    def from_list(cls, obj: Any, name: str = "header") -> Header:
        f = take_array(obj, name, 14)
        return cls(
            _chain_id(f[0], f"{name}.chain_id"),
            take_int(f[1], f"{name}.height", 1),
            take_int(f[2], f"{name}.time_ms", 0),
            _hash(f[3], f"{name}.prev_block_hash", allow_empty=True),
            _hash(f[4], f"{name}.last_commit_hash"),
            _hash(f[5], f"{name}.cards_root"),
            _hash(f[6], f"{name}.seeders_root"),
            _hash(f[7], f"{name}.keys_root"),
            _hash(f[8], f"{name}.txs_root"),
            _hash(f[9], f"{name}.evidence_hash"),
            _hash(f[10], f"{name}.validators_hash"),
            _hash(f[11], f"{name}.next_validators_hash"),
            _hash(f[12], f"{name}.app_hash"),
            take_bytes(f[13], f"{name}.proposer", size=crypto.PUBKEY_SIZE),
        )

    @classmethod
    def decode_untrusted(cls, data: bytes) -> Header:
        """Decode a header; raises :class:`DecodeError`."""
        return cls.from_list(unpack_untrusted(data, MAX_HEADER_BYTES))


def compute_lane_root(txs: Sequence[bytes]) -> bytes:
    """Merkle root over the BLAKE3 hashes of a lane's transaction bytes."""
    return merkle_root([crypto.hash_bytes(tx) for tx in txs])


def compute_evidence_hash(evidence: Sequence[bytes]) -> bytes:
    """Merkle root over the encoded evidence items."""
    return merkle_root(evidence)


@dataclass(frozen=True, slots=True)
class Block:
    """A block: header, the four lanes of pre-packed transactions, last commit, evidence."""

    header: Header
    """The header (its hash is the block hash)."""
    cards: tuple[bytes, ...]
    """Encoded transactions of the cards lane."""
    seeders: tuple[bytes, ...]
    """Encoded transactions of the seeders lane."""
    keys: tuple[bytes, ...]
    """Encoded transactions of the keys lane."""
    txs: tuple[bytes, ...]
    """Encoded transactions of the txs lane."""
    last_commit: Commit | None
    """The commit of the previous block; None only at the initial height."""
    evidence: tuple[bytes, ...]
    """Encoded evidence items (see :func:`decode_evidence_untrusted`)."""

    def hash(self) -> bytes:
        return self.header.hash()

    def lane(self, name: str) -> tuple[bytes, ...]:
        """The transactions of lane ``name`` (one of LANES)."""
        lanes = {"cards": self.cards, "seeders": self.seeders, "keys": self.keys, "txs": self.txs}
        if name not in lanes:
            raise UsageError(f"no lane {name!r}")
        return lanes[name]

    def to_list(self) -> list[Any]:
        return [
            self.header.to_list(),
            list(self.cards),
            list(self.seeders),
            list(self.keys),
            list(self.txs),
            None if self.last_commit is None else self.last_commit.to_list(),
            list(self.evidence),
        ]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    def verify_roots(self) -> None:
        """Raise :class:`InvalidBlock` unless the header's lane, commit and evidence roots match."""
        h = self.header
        for lane in LANES:
            if compute_lane_root(self.lane(lane)) != h.lane_root(lane):
                raise InvalidBlock(f"{lane}_root does not match the {lane} lane")
        if commit_hash(self.last_commit) != h.last_commit_hash:
            raise InvalidBlock("last_commit_hash does not match the last commit")
        if compute_evidence_hash(self.evidence) != h.evidence_hash:
            raise InvalidBlock("evidence_hash does not match the evidence")

    @classmethod
    def decode_untrusted(cls, data: bytes, max_bytes: int = MAX_BLOCK_BYTES) -> Block:
        """Decode a block of at most ``max_bytes``; raises :class:`DecodeError`.

        Lane items are checked only as bytes no larger than the block; their
        contents are decoded by the state transition.
        """
        limit = min(max_bytes, MAX_BLOCK_BYTES)
        f = take_array(unpack_untrusted(data, limit), "block", 7)
        lanes = [
            take_bytes_list(f[i + 1], f"block.{lane}", max_count=MAX_LANE_TXS, max_item=limit)
            for i, lane in enumerate(LANES)
        ]
        return cls(
            Header.from_list(f[0], "block.header"),
            lanes[0],
            lanes[1],
            lanes[2],
            lanes[3],
            None if f[5] is None else Commit.from_list(f[5], "block.last_commit"),
            take_bytes_list(
                f[6], "block.evidence", max_count=MAX_EVIDENCE_COUNT, max_item=MAX_EVIDENCE_BYTES
            ),
        )


def compute_block_time(last_commit: Commit, valset: ValidatorSet, prev_time_ms: TimeMs) -> TimeMs:
    """BFT time of the block carrying ``last_commit``: the power-weighted median timestamp.

    The signers' timestamps are sorted ascending; the median is the first
    whose cumulative power exceeds half of the signed power. So at most half
    of the signed power lies strictly before it and less than half strictly
    after it: validators with less than half of the signed power (any
    faulty minority of a +2/3 commit) cannot move it outside the range of the
    correct validators' times. (CometBFT's weightedMedian compares with
    ``total // 2`` using ``<=`` and can pick a lone low time.) The result is
    raised to ``prev_time_ms + 1`` if it is not above it. ``valset`` is the
    set that signed the commit. Raises :class:`InvalidCommit` for an empty
    commit or an index outside the set.
    """
    if not last_commit.signatures:
        raise InvalidCommit("commit has no signatures")
    weighted: list[tuple[int, int]] = []
    total = 0
    for s in last_commit.signatures:
        v = valset.get(s.validator_index)
        if v is None:
            raise InvalidCommit(f"commit signer index {s.validator_index} outside the set")
        weighted.append((s.timestamp_ms, v.power))
        total += v.power
    weighted.sort()
    result = weighted[-1][0]
    cumulative = 0
    for ts, power in weighted:
        cumulative += power
        if cumulative * 2 > total:
            result = ts
            break
    return max(result, prev_time_ms + 1)


__all__ = [
    "HASH_SIZE",
    "INT63_MAX",
    "LANES",
    "MAX_TOTAL_POWER",
    "Block",
    "Commit",
    "CommitSig",
    "DuplicateVoteEvidence",
    "Evidence",
    "Header",
    "Height",
    "Power",
    "Proposal",
    "Round",
    "TimeMs",
    "Validator",
    "ValidatorSet",
    "Vote",
    "VoteType",
    "commit_hash",
    "compute_block_time",
    "compute_evidence_hash",
    "compute_lane_root",
    "decode_evidence_untrusted",
]
