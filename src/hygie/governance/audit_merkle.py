"""RFC 6962 / RFC 9162 Merkle tree hashing, with inclusion and consistency proofs.

Leaf hash = SHA-256(0x00 || leaf), interior node = SHA-256(0x01 || left || right); a tree of n leaves splits
at the largest power of two smaller than n. The empty tree's hash is SHA-256 of nothing.
Pure functions over leaf hashes (bytes); the audit log feeds them the canonical bytes of its entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of leaf hashes, straight from the RFC's recursive definition."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


class CompactRange:
    """The roots of the perfect subtrees covering leaves [0, size): appending is O(log n), so is the root.

    ``root()`` equals ``root_of`` of every leaf appended so far; the audit log uses it to compute tree heads
    in one pass over the file.
    """

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (subtree size, hash), largest first

    def append(self, leaf: bytes) -> None:
        self.size += 1
        size, h = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            left_size, left = self._stack.pop()
            size, h = left_size + size, node_hash(left, h)
        self._stack.append((size, h))

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (RFC 9162 section 2.1.3.1)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root_of(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root_of(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows leaf ``index`` with hash ``leaf`` in the tree of ``size`` with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Hashes proving the tree of the first ``old_size`` leaves is a prefix of the tree of ``leaves``."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from size {old_size} to {n}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_of(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_of(leaves[:k])]


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def compact_range_to_json(cr: CompactRange) -> list[list[object]]:
    return [[size, h.hex()] for size, h in cr._stack]


def compact_range_from_json(data: list[list[object]]) -> CompactRange:
    """Rebuild a compact range from ``compact_range_to_json``; raises ValueError when it is not well formed."""
    cr = CompactRange()
    sizes = []
    for size, h in data:
        if not isinstance(size, int) or size < 1 or size & (size - 1) or not isinstance(h, str):
            raise ValueError("not a compact range")
        sizes.append(size)
        cr._stack.append((size, bytes.fromhex(h)))
    if sizes != sorted(sizes, reverse=True) or len(set(sizes)) != len(sizes):
        raise ValueError("not a compact range")
    cr.size = sum(sizes)
    return cr
