"""The audit log: every kind of tampering is caught and named; concurrent appends keep a valid chain;
patient-like data are refused; the Merkle tree matches RFC 6962."""

from __future__ import annotations

import base64
import itertools
import json
import multiprocessing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hygie.config import Settings
from hygie.governance.audit import (
    AuditLog,
    AuditSink,
    Checkpoint,
    Signer,
    canonical,
    entry_hash,
    load_public_key,
)
from hygie.governance.audit_details import AuditDataError
from hygie.governance.audit_merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

EVERY = 5


@pytest.fixture
def log(settings: Settings) -> AuditLog:
    return AuditLog(settings, checkpoint_every=EVERY)


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.record(f"cli:user{i % 3}", "release.build", f"release-{i}", persons=i, synthetic=True)


def _lines(log: AuditLog) -> list[bytes]:
    return log.log_file.read_bytes().splitlines(keepends=True)


def _write(log: AuditLog, lines: list[bytes]) -> None:
    log.log_file.write_bytes(b"".join(lines))


def _first(log: AuditLog, **kwargs) -> tuple[int, str]:
    result = log.verify(**kwargs)
    assert not result.ok
    first = result.first
    assert first is not None
    return first.seq, first.kind


def test_intact_log_verifies_with_signed_checkpoints(log):
    _fill(log, 23)
    result = log.verify()
    assert result.ok, result.findings
    assert result.entries == 23
    assert [cp.size for cp in log.checkpoints()] == [5, 10, 15, 20]
    assert log.checkpoint().size == 23  # on demand
    assert log.verify().checkpoints == 5
    entries = list(log.entries())
    assert [e.seq for e in entries] == list(range(1, 24))
    assert entries[0].prev == "0" * 64 and all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert entries[4].details == {"persons": 4, "synthetic": True}
    assert [e.seq for e in log.entries(actor="cli:user1")] == [2, 5, 8, 11, 14, 17, 20, 23]
    assert len(list(log.entries(action="release"))) == 23 and not list(log.entries(action="rel"))


def test_edited_field_is_caught(log):
    _fill(log, 12)
    lines = _lines(log)
    lines[6] = lines[6].replace(b'"persons":6', b'"persons":7')
    _write(log, lines)
    assert _first(log) == (7, "modified")


def test_edit_with_recomputed_hash_breaks_the_chain_or_checkpoint(log):
    _fill(log, 12)
    lines = _lines(log)
    data = json.loads(lines[2])
    data["actor"] = "cli:someone-else"
    data["hash"] = entry_hash({k: v for k, v in data.items() if k != "hash"})
    lines[2] = canonical(data) + b"\n"
    _write(log, lines)
    assert _first(log) == (4, "inserted-or-reordered")  # entry 4 no longer points at entry 3


def test_deleted_line_is_caught(log):
    _fill(log, 12)
    lines = _lines(log)
    del lines[3]
    _write(log, lines)
    assert _first(log) == (4, "deleted")


def test_inserted_line_is_caught(log):
    _fill(log, 12)
    lines = _lines(log)
    lines.insert(8, lines[2])  # a replayed entry
    _write(log, lines)
    assert _first(log) == (9, "inserted-or-reordered")


def test_swapped_lines_are_caught(log):
    _fill(log, 12)
    lines = _lines(log)
    lines[4], lines[5] = lines[5], lines[4]
    _write(log, lines)
    assert _first(log) == (5, "inserted-or-reordered")


def test_truncated_tail_after_a_checkpoint_is_caught(log):
    _fill(log, 12)
    _write(log, _lines(log)[:8])  # checkpoint of size 10 exists
    seq, kind = _first(log)
    assert (seq, kind) == (9, "truncated")
    assert "entries 9..10 were removed" in str(log.verify().first)


def test_torn_last_line_is_caught(log):
    _fill(log, 7)
    lines = _lines(log)
    lines[-1] = lines[-1][:30]
    _write(log, lines)
    assert _first(log) == (7, "torn")


def test_rechained_forgery_is_caught_by_the_signed_checkpoints(log):
    _fill(log, 12)
    lines = [json.loads(line) for line in _lines(log)]
    lines.pop(6)  # remove entry 7, then rebuild a perfect chain
    prev = "0" * 64
    forged = []
    for seq, data in enumerate(lines, start=1):
        data.update(seq=seq, prev=prev)
        data["hash"] = prev = entry_hash({k: v for k, v in data.items() if k != "hash"})
        forged.append(canonical(data) + b"\n")
    _write(log, forged)
    seq, kind = _first(log)
    assert (seq, kind) == (6, "rewritten")  # the checkpoint of size 5 still holds; the one of 10 does not


def test_deleting_the_checkpoints_does_not_hide_a_forgery(log, settings):
    _fill(log, 12)
    kept = log.checkpoint()
    assert kept is not None
    note = kept.signed_note()
    lines = _lines(log)
    data = json.loads(lines[1])
    data["outcome"] = "refused"
    prev = "0" * 64
    forged = []
    for line in [lines[0], canonical(data) + b"\n", *lines[2:]]:
        d = json.loads(line)
        d["prev"] = prev
        d["hash"] = prev = entry_hash({k: v for k, v in d.items() if k != "hash"})
        forged.append(canonical(d) + b"\n")
    _write(log, forged)
    log.checkpoint_file.unlink()
    # Without checkpoints on the hub, the auditor's own copy of the last one catches it.
    assert _first(log, trusted=[Checkpoint.from_note(note)]) == (1, "rewritten")
    _fill(log, 30)  # and a long stretch with no checkpoint at all is itself suspicious once checkpoints vanish
    log.checkpoint_file.unlink()
    assert _first(log)[1] == "missing-checkpoints"


@hsettings(max_examples=40, deadline=None)
@given(st.data())
def test_any_flipped_bit_in_the_log_is_caught(tmp_path_factory, data):
    home = tmp_path_factory.mktemp("flip")
    log = AuditLog(Settings(home=home, master_key_file=home / "keys" / "master.key"), checkpoint_every=EVERY)
    _fill(log, 8)
    raw = bytearray(log.log_file.read_bytes())
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    log.log_file.write_bytes(bytes(raw))
    assert not log.verify().ok


def test_flipped_byte_in_a_checkpoint_signature_is_caught(log):
    _fill(log, 11)
    records = [json.loads(line) for line in log.checkpoint_file.read_text().splitlines()]
    sig = bytearray(base64.b64decode(records[1]["signature"]))
    sig[10] ^= 0x01
    records[1]["signature"] = base64.b64encode(bytes(sig)).decode()
    log.checkpoint_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _first(log) == (10, "forged-checkpoint")


def test_a_replaced_signing_key_is_caught_by_the_pinned_public_key(log, settings, tmp_path):
    _fill(log, 6)
    pinned = tmp_path / "pinned.pub"
    pinned.write_text(log.public_key_file.read_text())
    # An intruder swaps in their own key, rewrites history and re-signs every checkpoint.
    key_file = settings.home / "keys" / "audit-signing.key"
    key_file.write_bytes(base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()) + b"\n")
    log.checkpoint_file.unlink()
    _write(log, _lines(log)[:3])
    log.checkpoint()
    assert log.verify().ok  # consistent with the key the intruder published...
    assert _first(log, public_key=load_public_key(pinned))[1] == "forged-checkpoint"  # ...not with the pinned one


def _append_many(home: str, worker: int, n: int) -> None:
    log = AuditLog(Settings(home=Path(home), master_key_file=Path(home) / "keys" / "master.key"), checkpoint_every=7)
    for i in range(n):
        log.record(f"cli:worker{worker}", "test.append", f"item-{worker}-{i}", index=i)


def test_concurrent_appends_from_several_processes(settings):
    workers, each = 4, 40
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(settings.home), w, each)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    log = AuditLog(settings, checkpoint_every=7)
    result = log.verify()
    assert result.ok, result.findings
    assert result.entries == workers * each
    assert {e.object for e in log.entries()} == {f"item-{w}-{i}" for w in range(workers) for i in range(each)}
    sizes = [cp.size for cp in log.checkpoints()]
    assert sizes == sorted(sizes) and sizes[-1] >= workers * each - 7


@pytest.mark.parametrize(
    ("details", "fragment"),
    [
        ({"note": "patient 1 85 05 78 006 084 91"}, "looks like a NIR"),
        ({"note": "185057800608491"}, "looks like a NIR"),
        ({"born": "1985-03-07"}, "looks like a date"),
        ({"born": "07/03/1985"}, "looks like a date"),
        ({"family_name": "x"}, "identity attribute"),
        ({"nom": "x"}, "identity attribute"),
        ({"birth_date": "x"}, "identity attribute"),
        ({"contact": "jean.dupont@example.org"}, "e-mail"),
        ({"contact": "06 12 34 56 78"}, "phone"),
        ({"note": "x" * 400}, "longer than"),
        ({"rate": 0.5}, "floats"),
        ({"rows": [{"deep": [[{"x": 1}]]}]}, "nested too deeply"),
        ({"Bad Key": 1}, "lower_case identifiers"),
    ],
)
def test_patient_like_data_are_refused(log, details, fragment):
    with pytest.raises(AuditDataError, match=fragment):
        log.record("cli:alice", "test.action", "release-1", **details)
    assert not log.log_file.exists()  # nothing was written


def test_object_and_actor_are_checked_too(log):
    with pytest.raises(AuditDataError, match="object"):
        log.record("cli:alice", "site.add", "patient 185057800608491")
    with pytest.raises(AuditDataError, match="action"):
        log.record("cli:alice", "Release Build", "x")
    # Timestamps, digests and staff e-mail actors are fine.
    log.record("alice@hospital.example", "test.ok", "d-0123456789abcdef", at="2026-01-02T03:04:05Z", sha="ab" * 32)
    assert log.verify().ok


def test_audit_sink_records_governance_events(log):
    import datetime as dt

    from hygie.governance.events import Event, EventSink

    sink: EventSink = AuditSink(log)
    at = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    sink.record(Event("console:root", "role.grant", "user:bob", "ok", at, {"role": "analyst", "ratio": 0.5}))
    AuditSink(log).emit(Event("bob", "auth.password", "user:bob", "denied", at))
    entries = list(log.entries())
    assert [(e.actor, e.action, e.object, e.outcome) for e in entries] == [
        ("console:root", "role.grant", "user:bob", "ok"),
        ("bob", "auth.password", "user:bob", "denied"),
    ]
    assert entries[0].details == {"role": "analyst", "ratio": "0.5"}
    with pytest.raises(AuditDataError, match="identity attribute"):
        sink.record(Event("console:root", "user.create", "user:carol", "ok", at, {"full_name": "Carol"}))


def test_checkpoint_note_round_trip_and_signature(log, settings):
    _fill(log, 3)
    cp = log.checkpoint()
    assert cp is not None
    note = cp.signed_note()
    assert note.startswith(f"hygie-audit/{cp.key_id}\n3\n")
    assert Checkpoint.from_note(note) == cp
    signer = Signer.load_or_create(settings.home / "keys" / "audit-signing.key")
    signer.public.verify(base64.b64decode(cp.signature), cp.text().encode())


# -- the Merkle tree ---------------------------------------------------------------------------------------------

# The RFC 6962 reference inputs and the tree heads published with them (Certificate Transparency test data).
RFC6962_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_merkle_roots_match_the_rfc6962_reference_values():
    leaves = [leaf_hash(bytes.fromhex(x)) for x in RFC6962_LEAVES]
    assert root_of([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    tree = CompactRange()
    for n, expected in enumerate(RFC6962_ROOTS, start=1):
        tree.append(leaves[n - 1])
        assert root_of(leaves[:n]).hex() == expected
        assert tree.root().hex() == expected


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@hsettings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_inclusion_proofs_verify_and_tampered_ones_fail(n, data):
    leaves = _leaves(n)
    root = root_of(leaves)
    tree = CompactRange()
    tree.extend(leaves)
    assert tree.root() == root
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = inclusion_proof(index, leaves)
    assert verify_inclusion(index, n, leaves[index], proof, root)
    assert not verify_inclusion(index, n, leaf_hash(b"other"), proof, root)
    if n > 1:
        assert not verify_inclusion((index + 1) % n, n, leaves[index], proof, root)
    if proof:
        bad = list(proof)
        bad[data.draw(st.integers(min_value=0, max_value=len(bad) - 1))] = leaf_hash(b"x")
        assert not verify_inclusion(index, n, leaves[index], bad, root)


@hsettings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_consistency_proofs_verify_and_tampered_ones_fail(n, data):
    leaves = _leaves(n)
    m = data.draw(st.integers(min_value=1, max_value=n))
    proof = consistency_proof(m, leaves)
    old, new = root_of(leaves[:m]), root_of(leaves)
    assert verify_consistency(m, n, old, new, proof)
    rewritten = [*leaves[: m - 1], leaf_hash(b"rewritten"), *leaves[m:]]
    assert not verify_consistency(m, n, root_of(rewritten[:m]), new, proof)
    assert not verify_consistency(m, n, old, root_of(rewritten), proof)
    if proof:
        bad = list(proof)
        bad[-1] = leaf_hash(b"x")
        assert not verify_consistency(m, n, old, new, bad)


# -- the CLI -----------------------------------------------------------------------------------------------------


def test_cli_actions_are_audited_and_verified(tmp_path, home, settings):
    from typer.testing import CliRunner

    from hygie.cli.audit import cli_actor
    from hygie.cli.main import app
    from tests.cdm_files import write_cdm

    runner = CliRunner()

    def hygie(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    folder = write_cdm(tmp_path / "cdm")
    assert hygie("cdm", "load", str(folder), "--release", "tiny", "--synthetic").exit_code == 0
    assert hygie("cdm", "load", str(folder), "--release", "tiny").exit_code == 1  # refused: already exists
    assert hygie("site", "add", "chu-a", "--format", "omop").exit_code == 0
    assert hygie("release", "delete", "tiny", "--yes").exit_code == 0
    entries = [json.loads(line) for line in hygie("audit", "log", "--json").stdout.splitlines()]
    summary = [(e["action"], e["object"], e["outcome"]) for e in entries]
    assert summary == [
        ("cdm.load", "release:tiny", "ok"),
        ("cdm.load", "release:tiny", "refused"),
        ("site.add", "site:chu-a", "ok"),
        ("release.delete", "release:tiny", "ok"),
    ]
    assert {e["actor"] for e in entries} == {cli_actor()} and cli_actor().startswith("cli:")
    assert entries[0]["details"]["synthetic"] is True and entries[1]["details"] == {"error": "ConflictError"}
    assert [
        e["seq"] for e in map(json.loads, hygie("audit", "log", "--json", "--action", "cdm").stdout.splitlines())
    ] == [1, 2]
    table = runner.invoke(app, ["audit", "log"], env={"COLUMNS": "200"}).stdout
    assert "release.delete" in table and "release:tiny" in table

    ok = hygie("audit", "verify")
    assert ok.exit_code == 0 and "audit log intact: 4 entries" in ok.stdout
    note = tmp_path / "checkpoint.txt"
    assert hygie("audit", "checkpoint", "--out", str(note)).exit_code == 0
    pinned = tmp_path / "audit.pub"
    pinned.write_text(hygie("audit", "public-key").stdout)
    assert hygie("audit", "verify", "--public-key", str(pinned), "--checkpoint", str(note)).exit_code == 0

    log = AuditLog(settings)
    lines = _lines(log)
    lines[2] = lines[2].replace(b"chu-a", b"chu-b")
    _write(log, lines)
    damaged = hygie("audit", "verify", "--public-key", str(pinned), "--checkpoint", str(note))
    assert damaged.exit_code == 1
    assert "audit log damaged at entry 3 (modified)" in damaged.stderr
