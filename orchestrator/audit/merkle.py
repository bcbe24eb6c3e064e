"""The RFC 6962 / RFC 9162 Merkle tree over SHA-256: roots, a growing frontier, and proofs.

Everything here works on leaf HASHES (``leaf_hash(record)``), so callers hash each record once and
store the hash; the domain-separating prefixes keep a leaf from ever passing for an inner node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1 over leaf hashes."""
    return _range_root(leaves, 0, len(leaves))


def _range_root(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) without copying the leaves.

    Pairing neighbours level by level and lifting an odd last node unchanged builds exactly the
    tree that RFC 9162 describes by splitting at the largest power of two below n.
    """
    if start == end:
        return EMPTY_ROOT
    level = [node_hash(leaves[i], leaves[i + 1]) for i in range(start, end - 1, 2)]
    if (end - start) % 2:
        level.append(leaves[end - 1])
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


class Frontier:
    """The compact range of a growing tree: the roots of its perfect subtrees, largest first.

    A tree of n leaves is one perfect subtree per set bit of n, so an append merges at most
    log2(n) of them and the root folds at most log2(n) of them.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError(f"frontier size must be >= 0, got {size}")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a frontier of size {size} holds {size.bit_count()} subtree hashes, got {len(hashes)}"
            )
        for value in hashes:
            if len(value) != HASH_SIZE:
                raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes, got {len(value)}")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        """Add one leaf HASH at index ``size``."""
        merged = leaf
        # Each trailing 1 bit of the old size is a subtree as big as the one just completed.
        carry = self._size
        while carry & 1:
            merged = node_hash(self._hashes.pop(), merged)
            carry >>= 1
        self._hashes.append(merged)
        self._size += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        folded = self._hashes[-1]
        for subtree in reversed(self._hashes[:-1]):
            folded = node_hash(subtree, folded)
        return folded

    def to_json(self) -> dict[str, object]:
        return {"size": self._size, "hashes": [value.hex() for value in self._hashes]}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Frontier:
        size = data.get("size")
        hashes = data.get("hashes")
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError(f"frontier 'size' must be an int, got {size!r}")
        if not isinstance(hashes, list):
            raise ValueError(f"frontier 'hashes' must be a list of hex strings, got {hashes!r}")
        decoded: list[bytes] = []
        for text in hashes:
            # Lowercase only: the stored form must have one spelling so rows compare byte for byte.
            if not isinstance(text, str) or len(text) != 2 * HASH_SIZE or text.strip("0123456789abcdef"):
                raise ValueError(f"frontier hash must be {2 * HASH_SIZE} lowercase hex digits, got {text!r}")
            decoded.append(bytes.fromhex(text))
        return cls(size, decoded)

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


RangeRoot = Callable[[int, int], bytes]  # MTH(D[start:end])


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1, nearest the leaf first."""
    return _inclusion(lambda a, b: _range_root(leaves, a, b), len(leaves), index, size)


def _inclusion(range_root: RangeRoot, count: int, index: int, size: int) -> list[bytes]:
    if not 0 <= index < size <= count:
        raise ValueError(f"no inclusion proof for index {index} in a tree of {size} ({count} leaves)")
    siblings: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            siblings.append(range_root(middle, end))
            end = middle
        else:
            siblings.append(range_root(start, middle))
            start = middle
    siblings.reverse()
    return siblings


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` place leaf HASH ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size or not _all_hashes(leaf, root, *proof):
        return False
    node, last = index, size - 1
    computed = leaf
    for sibling in proof:
        if last == 0:
            return False
        if node & 1 or node == last:
            computed = node_hash(sibling, computed)
            # Climb past levels where this node is the lone rightmost one and has no sibling.
            while not node & 1 and node:
                node >>= 1
                last >>= 1
        else:
            computed = node_hash(computed, sibling)
        node >>= 1
        last >>= 1
    return last == 0 and computed == root


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 2.1.4.1 (empty when old_size is 0 or new_size)."""
    return _consistency(lambda a, b: _range_root(leaves, a, b), len(leaves), old_size, new_size)


def _consistency(range_root: RangeRoot, count: int, old_size: int, new_size: int) -> list[bytes]:
    if not 0 <= old_size <= new_size <= count:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size} ({count} leaves)")
    if old_size in (0, new_size):
        return []
    siblings: list[bytes] = []
    start, end, remaining = 0, new_size, old_size
    old_tree_is_whole_subtree = True
    while remaining < end - start:
        split = _split(end - start)
        if remaining <= split:
            siblings.append(range_root(start + split, end))
            end = start + split
        else:
            siblings.append(range_root(start, start + split))
            start += split
            remaining -= split
            old_tree_is_whole_subtree = False
    siblings.reverse()
    # The verifier already holds the old root; it only needs this subtree when it is a fragment.
    if old_tree_is_whole_subtree:
        return siblings
    return [range_root(start, end), *siblings]


class Levels:
    """Every level of a tree, built once, so that a perfect subtree's hash is a lookup: a verifier
    proving many pairs of checkpoints over one log pays O(n) once, then O(log² n) per proof."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.count = len(leaves)
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def range_root(self, start: int, end: int) -> bytes:
        size = end - start
        if size == 0:
            return EMPTY_ROOT
        if size & (size - 1) == 0 and start % size == 0:
            height = size.bit_length() - 1
            return self.levels[height][start >> height]
        split = _split(size)
        return node_hash(self.range_root(start, start + split), self.range_root(start + split, end))

    def root(self, size: int) -> bytes:
        return self.range_root(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return _inclusion(self.range_root, self.count, index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return _consistency(self.range_root, self.count, old_size, new_size)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree of ``new_root`` an append-only extension of ``old_root``?"""
    if not 0 <= old_size <= new_size or not _all_hashes(old_root, new_root, *proof):
        return False
    if old_size == 0:
        return not proof
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    node, last = old_size - 1, new_size - 1
    while node & 1:
        node >>= 1
        last >>= 1
    old_computed = new_computed = path[0]
    for sibling in path[1:]:
        if last == 0:
            return False
        if node & 1 or node == last:
            old_computed = node_hash(sibling, old_computed)
            new_computed = node_hash(sibling, new_computed)
            while not node & 1 and node:
                node >>= 1
                last >>= 1
        else:
            new_computed = node_hash(new_computed, sibling)
        node >>= 1
        last >>= 1
    return last == 0 and old_computed == old_root and new_computed == new_root


def _all_hashes(*values: bytes) -> bool:
    return all(len(value) == HASH_SIZE for value in values)
