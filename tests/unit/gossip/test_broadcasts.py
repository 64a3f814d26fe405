"""The transmit-limited broadcast queue."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.broadcasts import (
    TransmitLimitedQueue,
    estimate_size,
    retransmit_limit,
)
from consul_tw.gossip.memberlist.codec import encode_message
from consul_tw.gossip.memberlist.messages import (
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Nack,
    Ping,
    Suspect,
    User,
)


def queue(n: int = 10, mult: int = 2) -> TransmitLimitedQueue:
    return TransmitLimitedQueue(mult, lambda: n, size_of=len)  # type: ignore[arg-type]


class LimitTests(SynchronousTestCase):
    def test_retransmit_limit(self) -> None:
        self.assertEqual(retransmit_limit(4, 0), 0)
        self.assertEqual(retransmit_limit(4, 1), 4)
        self.assertEqual(retransmit_limit(4, 9), 4)
        self.assertEqual(retransmit_limit(4, 10), 8)
        self.assertEqual(retransmit_limit(4, 99), 8)
        self.assertEqual(retransmit_limit(4, 100), 12)
        self.assertEqual(retransmit_limit(3, 999), 9)


class QueueTests(SynchronousTestCase):
    def test_each_broadcast_sent_limit_times(self) -> None:
        q = queue(n=10, mult=2)  # limit 2 × ceil(log10 11) = 4
        done: list[str] = []
        q.queue(b"abc", notify=lambda: done.append("abc"))
        for _ in range(4):
            self.assertEqual(q.get(100), [b"abc"])
        self.assertEqual(done, ["abc"])
        self.assertEqual(q.get(100), [])
        self.assertEqual(len(q), 0)

    def test_fewest_transmits_first_then_largest_then_newest(self) -> None:
        q = queue(n=10, mult=3)
        q.queue(b"old")
        self.assertEqual(q.get(100), [b"old"])
        q.queue(b"bb")
        q.queue(b"cc")
        q.queue(b"dddd")
        # New ones (0 transmits) before "old" (1); largest first; newer first at equal size.
        self.assertEqual(q.get(100), [b"dddd", b"cc", b"bb", b"old"])

    def test_byte_budget(self) -> None:
        q = queue()
        q.queue(b"x" * 10)
        q.queue(b"y" * 5)
        q.queue(b"z" * 3)
        # 10 + 2 = 12 used; 5 would need 7 of the 8 left: fits; then 3 needs 5 of 1: no.
        self.assertEqual(q.get(20, overhead=2), [b"x" * 10, b"y" * 5])
        # Now z (0 transmits) comes first, then the larger of the rest that fits.
        self.assertEqual(q.get(12, overhead=2), [b"z" * 3, b"y" * 5])
        self.assertEqual(q.get(5, overhead=2), [b"z" * 3])
        self.assertEqual(q.get(2, overhead=2), [])

    def test_size_function_at_get_time(self) -> None:
        q = queue()
        q.queue(b"abcdef")
        self.assertEqual(q.get(10, size_of=lambda p: 100), [])
        self.assertEqual(q.get(10), [b"abcdef"])

    def test_newer_broadcast_about_a_node_invalidates_older(self) -> None:
        q = TransmitLimitedQueue(4, lambda: 10)
        done: list[str] = []
        suspect = Suspect(incarnation=1, node="b", from_node="a")
        dead = Dead(incarnation=1, node="b", from_node="a")
        other = Suspect(incarnation=1, node="c", from_node="a")
        q.queue(suspect, name="b", notify=lambda: done.append("suspect"))
        q.queue(other, name="c")
        q.queue(dead, name="b")
        self.assertEqual(done, ["suspect"])
        self.assertEqual(len(q), 2)
        self.assertCountEqual(q.get(1400), [dead, other])

    def test_unnamed_broadcasts_never_invalidate(self) -> None:
        q = queue()
        q.queue(b"a")
        q.queue(b"a")
        self.assertEqual(len(q), 2)

    def test_prune_and_reset(self) -> None:
        q = queue(n=100, mult=4)
        done: list[bytes] = []
        for payload in (b"a", b"b", b"c"):
            q.queue(payload, notify=lambda p=payload: done.append(p))  # type: ignore[misc]
        q.get(3, overhead=0)  # sends all three once; c, b, a by newest
        q.queue(b"d")
        q.prune(2)
        self.assertEqual(len(q), 2)
        self.assertEqual(sorted(done), [b"a", b"b"])
        q.reset()
        self.assertEqual(len(q), 0)
        self.assertEqual(q.get(100), [])


names = st.text(min_size=0, max_size=64)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
addrs = st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16)
messages = st.one_of(
    st.builds(
        Ping,
        seq_no=u32,
        node=names,
        source_addr=st.none() | addrs,
        source_port=st.none() | u16,
        source_node=st.none() | names,
    ),
    st.builds(
        IndirectPing,
        seq_no=u32,
        target=addrs,
        port=u16,
        node=names,
        nack=st.booleans(),
        source_addr=st.none() | addrs,
        source_port=st.none() | u16,
        source_node=st.none() | names,
    ),
    st.builds(Ack, seq_no=u32, payload=st.none() | st.binary(max_size=300)),
    st.builds(Nack, seq_no=u32),
    st.builds(Suspect, incarnation=u32, node=names, from_node=names),
    st.builds(Dead, incarnation=u32, node=names, from_node=names),
    st.builds(
        Alive,
        incarnation=u32,
        node=names,
        addr=addrs,
        port=u16,
        meta=st.binary(max_size=512),
        vsn=st.binary(min_size=6, max_size=6),
    ),
    st.builds(User, payload=st.binary(max_size=1000)),
)


class EstimateTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(messages)
    def test_estimate_is_an_upper_bound_of_the_codec(self, msg: object) -> None:
        try:
            encoded = encode_message(msg)  # type: ignore[arg-type]
        except ValueError:
            return  # the codec refuses what the wire cannot carry
        self.assertGreaterEqual(estimate_size(msg), len(encoded))

    def test_bytes_are_their_length(self) -> None:
        self.assertEqual(estimate_size(b"abcd"), 4)
