"""The in-memory Raft log: compaction and the configuration it tracks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consul_tw.raft.log import RaftLog
from consul_tw.raft.messages import EntryType, LogEntry, Server


def config(index: int, term: int, *ids: str) -> LogEntry:
    servers = tuple(Server(id=i, address=f"{i}:8300") for i in ids)
    return LogEntry(index=index, term=term, type=EntryType.CONFIGURATION, servers=servers)


def scan(log: RaftLog, upto: int | None = None) -> tuple[int, tuple[Server, ...]]:
    """The configuration the slow way: the latest configuration entry held, else the snapshot's."""
    last = log.last_index if upto is None else upto
    for index in range(min(last, log.last_index), log.first_index - 1, -1):
        entry = log.entry(index)
        if entry.type is EntryType.CONFIGURATION:
            return entry.index, entry.servers
    return log.snapshot_configuration_index, log.snapshot_servers


def test_configuration_follows_appends_truncation_and_compaction() -> None:
    log = RaftLog.from_entries([config(1, 1, "a"), LogEntry(index=2, term=1)])
    assert log.configuration()[0] == 1
    log.append(config(3, 1, "a", "b"))
    assert log.configuration() == (3, config(3, 1, "a", "b").servers)
    log.truncate_after(2)
    assert log.configuration()[0] == 1
    log.append(config(3, 2, "a", "c"))
    log.append(LogEntry(index=4, term=2))
    log.compact_through(3, 2, config(3, 2, "a", "c").servers, 3)
    assert log.configuration() == (3, config(3, 2, "a", "c").servers)
    assert log.configuration_at(4)[0] == 3
    assert (log.first_index, log.term_at(3), log.term_at(2)) == (4, 2, None)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["append", "config", "truncate", "compact"]), st.integers(0, 5)),
        max_size=40,
    )
)
def test_cached_configuration_equals_a_scan(ops: list[tuple[str, int]]) -> None:
    log = RaftLog.from_entries([config(1, 1, "a")])
    for op, n in ops:
        last = log.last_index
        if op == "append":
            log.append(LogEntry(index=last + 1, term=1))
        elif op == "config":
            log.append(config(last + 1, 1, *"abc"[: n % 3 + 1]))
        elif op == "truncate":
            log.truncate_after(max(log.snapshot_index, last - n))
        elif op == "compact" and last > log.snapshot_index:
            through = min(last, log.snapshot_index + n + 1)
            index, servers = log.configuration_at(through)
            log.compact_through(through, log.term_at(through) or 0, servers, index)
        assert log.configuration() == scan(log)
        assert log.configuration_at(log.last_index) == scan(log)
