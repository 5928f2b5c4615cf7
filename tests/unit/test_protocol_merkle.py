"""RFC 9162 Merkle trees: published vectors and properties over every small tree."""

from __future__ import annotations

from honeymesh_client.protocol import merkle

# Leaf inputs and roots from transparency-dev/merkle testonly/constants.go
# (LeafInputs, RootHashes, CompactTrees), the RFC 6962 vectors of Certificate
# Transparency and Trillian.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
MAX = 70


def _hashes(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _store(hashes: list[bytes]) -> dict[merkle.Node, bytes]:
    return merkle.new_nodes(0, [], hashes)


def test_the_published_roots() -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES]
    for size, want in enumerate(ROOTS):
        assert merkle.root(hashes[:size]) == want
        compact = merkle.CompactRange()
        for h in hashes[:size]:
            compact.append(h)
        assert compact.root() == want


def test_the_published_compact_trees() -> None:
    stored = _store([merkle.leaf_hash(leaf) for leaf in LEAVES])
    assert [stored[n] for n in merkle.frontier(7)] == [
        stored[(2, 0)],
        stored[(1, 2)],
        stored[(0, 6)],
    ]
    assert stored[(3, 0)] == ROOTS[8]


def test_stored_nodes_are_the_complete_subtrees() -> None:
    hashes = _hashes(MAX)
    stored = _store(hashes)
    for (level, index), value in stored.items():
        assert value == merkle.root(hashes[index << level : (index + 1) << level])
    for size in range(MAX + 1):
        front = [stored[n] for n in merkle.frontier(size)]
        assert merkle.CompactRange(size, front).root() == merkle.root(hashes[:size])
        assert merkle.new_nodes(size, front, hashes[size:]) == {
            n: v for n, v in stored.items() if (n[1] + 1) << n[0] > size
        }


def test_inclusion_proofs_from_stored_nodes() -> None:
    hashes = _hashes(MAX)
    stored = _store(hashes)
    for size in range(1, MAX + 1):
        r = merkle.root(hashes[:size])
        for index in range(size):
            plan = merkle.inclusion_plan(index, size)
            assert len(plan) <= 2 * size.bit_length()
            proof = merkle.inclusion_proof(index, size, {n: stored[n] for n in plan})
            assert merkle.verify_inclusion(index, size, hashes[index], proof, r)
            assert (
                not merkle.verify_inclusion(index, size, hashes[index - 1], proof, r) or size == 1
            )
            assert not merkle.verify_inclusion(index, size, hashes[index], [*proof, r], r)
            for i in range(len(proof)):
                bad = list(proof)
                bad[i] = merkle.leaf_hash(bad[i])
                assert not merkle.verify_inclusion(index, size, hashes[index], bad, r)


def test_consistency_proofs_from_stored_nodes() -> None:
    hashes = _hashes(MAX)
    stored = _store(hashes)
    roots = [merkle.root(hashes[:n]) for n in range(MAX + 1)]
    for second in range(MAX + 1):
        for first in range(second + 1):
            plan = merkle.consistency_plan(first, second)
            assert len(plan) <= 2 * second.bit_length() + 1
            proof = merkle.consistency_proof(first, second, {n: stored[n] for n in plan})
            assert merkle.verify_consistency(first, second, proof, roots[first], roots[second])
            if 0 < first < second:
                assert not merkle.verify_consistency(
                    first, second, proof, roots[first - 1], roots[second]
                )
                assert not merkle.verify_consistency(
                    first, second, proof, roots[first], roots[second - 1]
                )
                assert not merkle.verify_consistency(
                    first, second, proof[:-1], roots[first], roots[second]
                )
                for i in range(len(proof)):
                    bad = list(proof)
                    bad[i] = merkle.leaf_hash(bad[i])
                    assert not merkle.verify_consistency(
                        first, second, bad, roots[first], roots[second]
                    )
