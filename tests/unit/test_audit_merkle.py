"""RFC 6962 / RFC 9162 Merkle tree: published known answers, then properties against the RFC text.

Known answers: the test vectors of transparency-dev/merkle (proof/verify_test.go and
rfc6962/rfc6962_test.go), which Certificate Transparency and Trillian share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    Levels,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

DATA = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
LEAVES = [leaf_hash(data) for data in DATA]
ROOTS = [
    bytes.fromhex(text)
    for text in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]


def hexes(*texts: str) -> list[bytes]:
    return [bytes.fromhex(text) for text in texts]


# (index, size, proof); the published vectors number leaves from 1, these from 0.
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        hexes(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, hexes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        hexes(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        hexes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        hexes(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        hexes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def test_hash_known_answers() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert (
        node_hash(b"N123", b"N456").hex()
        == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_roots_of_sizes_0_to_8() -> None:
    assert root([]) == EMPTY_ROOT
    for size, expected in enumerate(ROOTS, start=1):
        assert root(LEAVES[:size]) == expected, size


def test_frontier_roots_of_sizes_0_to_8() -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for leaf, expected in zip(LEAVES, ROOTS, strict=True):
        frontier.append(leaf)
        assert frontier.root() == expected, frontier.size


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_known_answers(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(LEAVES, index, size) == proof
    assert verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_known_answers(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAVES, old, new) == proof
    assert verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("index", "size", "proof"), [case for case in INCLUSION if case[2]])
def test_inclusion_known_answers_corrupted(index: int, size: int, proof: list[bytes]) -> None:
    leaf, good_root = LEAVES[index], ROOTS[size - 1]
    wrong = [
        (leaf, index - 1, size, proof, good_root),
        (leaf, index + 1, size, proof, good_root),
        (leaf, index ^ 2, size, proof, good_root),
        (leaf, index, size * 2, proof, good_root),
        (leaf, index, size // 2, proof, good_root),
        (leaf_hash(b"WrongLeaf"), index, size, proof, good_root),
        (leaf, index, size, proof, EMPTY_ROOT),
        (leaf, index, size, proof, SOME_HASH),
        (leaf, index, size, [*proof, good_root], good_root),
        (leaf, index, size, [good_root, *proof], good_root),
        (leaf, index, size, [*proof, b""], good_root),
        (leaf, index, size, proof[:-1], good_root),
        (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], good_root),
    ]
    wrong += [(leaf, index, size, flip(proof, position), good_root) for position in range(len(proof))]
    for case in wrong:
        assert not verify_inclusion(*case), case


@pytest.mark.parametrize(("old", "new", "proof"), [case for case in CONSISTENCY if case[2]])
def test_consistency_known_answers_corrupted(old: int, new: int, proof: list[bytes]) -> None:
    old_root, new_root = ROOTS[old - 1], ROOTS[new - 1]
    wrong = [
        (old - 1, new, old_root, new_root, proof),
        (old + 1, new, old_root, new_root, proof),
        (old ^ 2, new, old_root, new_root, proof),
        (old, new * 2, old_root, new_root, proof),
        (old, new // 2, old_root, new_root, proof),
        (old, new, SOME_HASH, new_root, proof),
        (old, new, old_root, SOME_HASH, proof),
        (old, new, new_root, old_root, proof),
        (old, new, old_root, new_root, []),
        (old, new, old_root, new_root, [*proof, old_root]),
        (old, new, old_root, new_root, [*proof, new_root]),
        (old, new, old_root, new_root, [old_root, *proof]),
        (old, new, old_root, new_root, [new_root, *proof]),
        (old, new, old_root, new_root, [proof[0], *proof]),
        (old, new, old_root, new_root, proof[:-1]),
    ]
    wrong += [(old, new, old_root, new_root, flip(proof, position)) for position in range(len(proof))]
    for case in wrong:
        assert not verify_consistency(*case), case


def test_consistency_edge_sizes() -> None:
    some, other = leaf_hash(b"some"), leaf_hash(b"other")
    assert verify_consistency(0, 0, some, other, [])
    assert verify_consistency(0, 5, some, other, [])
    assert not verify_consistency(0, 5, some, other, [EMPTY_ROOT])
    assert verify_consistency(3, 3, some, some, [])
    assert not verify_consistency(3, 3, some, other, [])
    assert not verify_consistency(3, 3, some, some, [EMPTY_ROOT])
    assert not verify_consistency(2, 1, some, other, [])
    assert not verify_consistency(1, 2, some, other, [])


def test_inclusion_edge_sizes() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], b"")
    for index, size in [(0, 0), (1, 0), (2, 1), (1, 1), (-1, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)


def test_proof_arguments_out_of_range_are_refused() -> None:
    for index, size in [(8, 8), (-1, 8), (0, 0), (0, 9)]:
        with pytest.raises(ValueError, match="no inclusion proof"):
            inclusion_proof(LEAVES, index, size)
    for old, new in [(5, 4), (-1, 4), (2, 9)]:
        with pytest.raises(ValueError, match="no consistency proof"):
            consistency_proof(LEAVES, old, new)


def flip(proof: Sequence[bytes], position: int) -> list[bytes]:
    changed = list(proof)
    changed[position] = bytes([changed[position][0] ^ 0x10]) + changed[position][1:]
    return changed


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """MTH as RFC 9162 2.1.1 writes it: recursion with copies, fine for a few hundred leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return node_hash(reference_root(leaves[:split]), reference_root(leaves[split:]))


def reference_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    if index < split:
        return [*reference_path(index, leaves[:split]), reference_root(leaves[split:])]
    return [*reference_path(index - split, leaves[split:]), reference_root(leaves[:split])]


def reference_subproof(old: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    if old == len(leaves):
        return [] if whole else [reference_root(leaves)]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    if old <= split:
        return [*reference_subproof(old, leaves[:split], whole), reference_root(leaves[split:])]
    return [*reference_subproof(old - split, leaves[split:], False), reference_root(leaves[:split])]


def inclusion_shape(index: int, size: int) -> tuple[bool, ...] | None:
    """Which side the leaf's path takes at each level, top down (None: no such leaf)."""
    if not 0 <= index < size:
        return None
    sides: list[bool] = []
    while size > 1:
        split = 1
        while split * 2 < size:
            split *= 2
        sides.append(index < split)
        if index >= split:
            index, size = index - split, size - split
        else:
            size = split
    return tuple(sides)


def consistency_shape(old: int, new: int) -> tuple[bool, ...] | None:
    """Which side the old tree's edge takes at each level of the new tree, top down."""
    if not 0 < old <= new:
        return None
    sides: list[bool] = []
    while old < new:
        split = 1
        while split * 2 < new:
            split *= 2
        sides.append(old <= split)
        if old > split:
            old, new = old - split, new - split
        else:
            new = split
    return tuple(sides)


def make_leaves(count: int) -> list[bytes]:
    return [leaf_hash(number.to_bytes(4, "big")) for number in range(count)]


def test_root_and_frontier_match_the_rfc_definition_at_every_size_to_600() -> None:
    leaves = make_leaves(600)
    frontier = Frontier()
    for size in range(601):
        expected = reference_root(leaves[:size])
        assert root(leaves[:size]) == expected, size
        assert frontier.root() == expected, size
        assert Frontier.from_json(frontier.to_json()).root() == expected, size
        if size < 600:
            frontier.append(leaves[size])


@given(st.lists(st.binary(max_size=8), max_size=400), st.data())
def test_frontier_root_equals_root_at_every_sampled_size(records: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(record) for record in records]
    checkpoints = set(data.draw(st.lists(st.integers(0, len(leaves)), max_size=5)))
    frontier = Frontier()
    for size in range(len(leaves) + 1):
        if size in checkpoints:
            assert frontier.root() == root(leaves[:size])
            # A frontier stored in a row and read back carries on exactly as the original.
            frontier = Frontier.from_json(frontier.to_json())
        if size < len(leaves):
            frontier.append(leaves[size])
    assert frontier.size == len(leaves)
    assert frontier.root() == root(leaves)


def test_frontier_json_form() -> None:
    frontier = Frontier()
    for leaf in LEAVES[:5]:
        frontier.append(leaf)
    stored = frontier.to_json()
    assert stored == {"size": 5, "hashes": [ROOTS[3].hex(), LEAVES[4].hex()]}
    assert Frontier.from_json(stored).root() == ROOTS[4]


@pytest.mark.parametrize(
    "stored",
    [
        {"size": 5, "hashes": [ROOTS[3].hex()]},
        {"size": -1, "hashes": []},
        {"size": True, "hashes": ["00" * 32]},
        {"size": "1", "hashes": ["00" * 32]},
        {"size": 1, "hashes": ["AB" * 32]},
        {"size": 1, "hashes": ["00" * 31]},
        {"size": 1, "hashes": "00" * 32},
        {"size": 1, "hashes": [None]},
        {"hashes": []},
    ],
)
def test_frontier_from_json_refuses_malformed_rows(stored: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="frontier"):
        Frontier.from_json(stored)


sized_trees = st.integers(1, 300).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(0, size - 1), st.integers(0, 255))
)


@given(sized_trees)
def test_every_inclusion_proof_verifies_and_no_tampered_one_does(case: tuple[int, int, int]) -> None:
    size, index, position_seed = case
    leaves = make_leaves(size + 3)
    tree_root = root(leaves[:size])
    proof = inclusion_proof(leaves, index, size)
    assert proof == reference_path(index, leaves[:size])
    assert verify_inclusion(leaves[index], index, size, proof, tree_root)

    if proof:
        assert not verify_inclusion(
            leaves[index], index, size, flip(proof, position_seed % len(proof)), tree_root
        )
        assert not verify_inclusion(leaves[index], index, size, proof[:-1], tree_root)
    assert not verify_inclusion(leaves[index], index, size, [*proof, SOME_HASH], tree_root)
    assert not verify_inclusion(leaves[index], index, size, proof, SOME_HASH)
    assert not verify_inclusion(leaves[index], index, size, proof, root(leaves[: size + 1]))
    assert not verify_inclusion(leaves[size], index, size, proof, tree_root)
    # A proof does not pin the tree size down (the signed checkpoint does): under another index or
    # size it verifies exactly when the path has the same shape, as leaf 0 of 3 and of 4 leaves do.
    for wrong_index in {index - 1, index + 1, index ^ 1, size}:
        same_shape = inclusion_shape(wrong_index, size) == inclusion_shape(index, size)
        assert verify_inclusion(leaves[index], wrong_index, size, proof, tree_root) == same_shape
    for wrong_size in {size + 1, size * 2, size - 1, size // 2} - {size}:
        same_shape = inclusion_shape(index, wrong_size) == inclusion_shape(index, size)
        assert verify_inclusion(leaves[index], index, wrong_size, proof, tree_root) == same_shape


consistent_sizes = st.integers(1, 300).flatmap(
    lambda new: st.tuples(st.integers(1, new), st.just(new), st.integers(0, 255))
)


@given(consistent_sizes)
def test_every_consistency_proof_verifies_and_no_tampered_one_does(case: tuple[int, int, int]) -> None:
    old, new, position_seed = case
    leaves = make_leaves(new + 1)
    old_root, new_root = root(leaves[:old]), root(leaves[:new])
    proof = consistency_proof(leaves, old, new)
    assert proof == reference_subproof(old, leaves[:new], True)
    assert verify_consistency(old, new, old_root, new_root, proof)
    if old == new:
        return
    assert not verify_consistency(old, new, old_root, new_root, flip(proof, position_seed % len(proof)))
    assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
    assert not verify_consistency(old, new, old_root, new_root, [*proof, SOME_HASH])
    assert not verify_consistency(old, new, SOME_HASH, new_root, proof)
    assert not verify_consistency(old, new, old_root, SOME_HASH, proof)
    assert not verify_consistency(old, new, new_root, old_root, proof)
    # A rewritten history: the same sizes, one old leaf changed.
    forged = [leaf_hash(b"forged"), *leaves[1:]]
    assert not verify_consistency(old, new, old_root, root(forged[:new]), proof)
    # As with inclusion, other sizes pass exactly when the proof has the same shape under them.
    for wrong_old in {old - 1, old + 1} - {0, new}:
        same_shape = consistency_shape(wrong_old, new) == consistency_shape(old, new)
        assert verify_consistency(wrong_old, new, old_root, new_root, proof) == same_shape
    for wrong_new in {new - 1, new + 1, new * 2, new // 2} - {old, new}:
        same_shape = consistency_shape(old, wrong_new) == consistency_shape(old, new)
        assert verify_consistency(old, wrong_new, old_root, new_root, proof) == same_shape


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=140), st.data())
def test_levels_give_the_same_roots_and_proofs_as_the_leaves(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    levels = Levels(leaves)
    old = data.draw(st.integers(min_value=0, max_value=size))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    assert levels.root(size) == root(leaves)
    assert levels.consistency_proof(old, size) == consistency_proof(leaves, old, size)
    assert levels.inclusion_proof(index, size) == inclusion_proof(leaves, index, size)
