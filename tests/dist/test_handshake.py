"""The two-leg handshake relay between fake real nodes, pumped in memory."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distproxy.dist.flags import MANDATORY_25, PROXY_MASK, DFlag
from distproxy.dist.framing import encode_frame
from distproxy.dist.handshake import (
    AcceptorHandshake, AState, DialUpstream, HandshakeDone, HandshakeError, HandshakeFailed,
    HandshakeRelay, InitiatorHandshake, IState, NameReceived, SendDownstream, SendUpstream,
    WrongCookie,
)
from distproxy.dist.handshake_messages import encode_name, gen_digest

from .fakenodes import FakeAcceptor, FakeInitiator, digest, p2

T = "t@127.0.0.1"
U1 = "u1@127.0.0.1"
DOWN_COOKIE = b"peer-cookie-u1"
UP_COOKIE = b"cluster-cookie-T"


class Harness:
    """Pumps bytes between a FakeInitiator, the relay and a FakeAcceptor."""

    def __init__(self, ini=None, acc=None, relay=None, *, bytewise=False, auto_connect=True,
                 **relay_kw):
        self.ini = ini or FakeInitiator(U1, DOWN_COOKIE, T)
        self.acc = acc or FakeAcceptor(T, {U1: UP_COOKIE})
        self.cookies = {U1: DOWN_COOKIE}
        self.relay = relay or HandshakeRelay(
            T, self.cookies.get, UP_COOKIE, now=0.0, **relay_kw)
        self.bytewise = bytewise
        self.auto_connect = auto_connect
        self.events: list = []
        self.down_sent = b""  # relay -> initiator
        self.up_sent = b""  # relay -> acceptor
        self.from_ini = b""
        self.from_acc = b""
        self.post_done_down = b""
        self.post_done_up = b""
        self.dialled = False
        self.now = 0.0

    @property
    def result(self):
        return self.relay.result

    def _chunks(self, data):
        step = 1 if self.bytewise is True else (self.bytewise or 0)
        if step:
            return [data[i:i + step] for i in range(0, len(data), step)]
        return [data] if data else []

    def _handle(self, evs, to_ini, to_acc):
        for ev in evs:
            self.events.append(ev)
            if isinstance(ev, SendDownstream):
                self.down_sent += ev.data
                to_ini.append(ev.data)
            elif isinstance(ev, SendUpstream):
                self.up_sent += ev.data
                to_acc.append(ev.data)
            elif isinstance(ev, DialUpstream):
                assert ev.node_name == T
                self.dialled = True
                if self.auto_connect:
                    self._handle(self.relay.upstream_connected(self.now), to_ini, to_acc)

    def run(self, rounds=10_000):
        to_relay_down = [self.ini.start()]
        to_relay_up: list[bytes] = []
        to_ini: list[bytes] = []
        to_acc: list[bytes] = []
        self.from_ini += to_relay_down[0]
        for _ in range(rounds):
            if not (to_relay_down or to_relay_up or to_ini or to_acc):
                break
            while to_ini:
                out = self.ini.feed(to_ini.pop(0))
                if out:
                    self.from_ini += out
                    to_relay_down.append(out)
            while to_acc:
                out = self.acc.feed(to_acc.pop(0))
                if out:
                    self.from_acc += out
                    to_relay_up.append(out)
            if to_relay_down:
                data = to_relay_down.pop(0)
                for c in self._chunks(data):
                    if isinstance(self.relay.result, HandshakeDone):
                        self.post_done_down += c
                    else:
                        self._handle(self.relay.receive_downstream(c, self.now), to_ini, to_acc)
            if to_relay_up:
                data = to_relay_up.pop(0)
                for c in self._chunks(data):
                    if isinstance(self.relay.result, HandshakeDone):
                        self.post_done_up += c
                    else:
                        self._handle(self.relay.receive_upstream(c, self.now), to_ini, to_acc)
            if self.acc.state == "closed" and not self.relay.finished and not to_relay_up:
                self._handle(self.relay.upstream_failed("connection closed", self.now),
                             to_ini, to_acc)
        return self.relay.result


def assert_done(h: Harness) -> HandshakeDone:
    done = h.result
    assert isinstance(done, HandshakeDone), done
    assert h.ini.state == "done" and h.acc.state == "done"
    # both real nodes use the same set, and it is fd & fu & mask
    assert h.ini.negotiated == h.acc.negotiated == done.negotiated_flags
    assert done.negotiated_flags == h.ini.flags & h.acc.flags & PROXY_MASK
    # name- and creation-transparent
    assert h.acc.peer_name == U1 == done.downstream_name
    assert h.ini.peer_name == T == done.upstream_name
    assert h.ini.peer_creation == h.acc.creation == done.upstream_creation
    assert done.downstream_creation == h.ini.creation
    # each leg offered the other's flags & mask
    assert h.ini.peer_flags == h.acc.flags & PROXY_MASK
    assert not h.ini.peer_flags & (DFlag.DIST_HDR_ATOM_CACHE | DFlag.FRAGMENTS)
    assert_cookies_split(h)
    return done


def assert_cookies_split(h: Harness):
    """No downstream byte derives from the upstream cookie and vice versa."""
    challenges = {h.ini.challenge, h.acc.challenge}
    for data in (h.down_sent, h.up_sent):  # challenges the relay itself issued
        i = 0
        while i + 2 <= len(data):
            n = struct.unpack(">H", data[i:i + 2])[0]
            m = data[i + 2:i + 2 + n]
            if m[:1] == b"N" and len(m) >= 19 and data is h.down_sent:
                challenges.add(struct.unpack(">I", m[9:13])[0])
            if m[:1] == b"r":
                challenges.add(struct.unpack(">I", m[1:5])[0])
            i += 2 + n
    for ch in challenges:
        assert digest(UP_COOKIE, ch) not in h.down_sent
        assert digest(DOWN_COOKIE, ch) not in h.up_sent
    assert UP_COOKIE not in h.down_sent and DOWN_COOKIE not in h.up_sent


@pytest.mark.parametrize("bytewise", [False, True])
def test_ok(bytewise):
    h = Harness(bytewise=bytewise)
    h.run()
    done = assert_done(h)
    assert h.ini.status == "ok"
    assert done.leftover_downstream == b"" and done.leftover_upstream == b""
    assert h.acc.peer_creation == h.ini.creation
    assert h.acc.peer_flags == h.ini.flags & PROXY_MASK


def test_ok_simultaneous():
    h = Harness(acc=FakeAcceptor(T, {U1: UP_COOKIE}, status="ok_simultaneous"))
    h.run()
    assert_done(h)
    assert h.ini.status == "ok_simultaneous"


@pytest.mark.parametrize("status", ["nok", "not_allowed"])
def test_upstream_refuses(status):
    h = Harness(acc=FakeAcceptor(T, {U1: UP_COOKIE}, status=status))
    h.run()
    assert h.ini.status == status
    r = h.result
    assert isinstance(r, HandshakeFailed) and r.leg == "upstream" and status in r.reason


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("answer", [True, False])
def test_alive(answer, bytewise):
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, alive_answer=answer),
                acc=FakeAcceptor(T, {U1: UP_COOKIE}, status="alive"), bytewise=bytewise)
    h.run()
    assert h.ini.status == "alive"
    assert h.acc.alive_answer == ("strue" if answer else "sfalse")
    if answer:
        assert_done(h)
    else:
        assert isinstance(h.result, HandshakeFailed) and "sfalse" in h.result.reason


def test_wrong_downstream_cookie():
    h = Harness(ini=FakeInitiator(U1, b"guess", T))
    h.run()
    r = h.result
    assert isinstance(r, HandshakeFailed)
    assert r.reason == f"wrong cookie from {U1}" and r.leg == "downstream"
    assert h.ini.state == "ack"  # never got an 'a'
    assert b"a" + digest(b"guess", h.ini.challenge) not in h.down_sent
    assert_cookies_split(h)


def test_wrong_upstream_cookie():
    h = Harness(relay=HandshakeRelay(T, {U1: DOWN_COOKIE}.get, b"wrong", now=0.0))
    h.run()
    r = h.result
    assert isinstance(r, HandshakeFailed) and r.leg == "upstream"
    assert "wrong upstream cookie" in r.reason
    assert h.acc.error == "Invalid challenge reply"
    assert h.ini.state == "ack"  # the dialler never gets 'a'


def test_bad_ack_from_upstream():
    acc = FakeAcceptor(T, {U1: UP_COOKIE})
    h = Harness(acc=acc)
    orig = acc._msg

    def tamper(m):
        out = orig(m)
        if acc.state == "done":
            out = out[:3] + bytes([out[3] ^ 1]) + out[4:]
        return out
    acc._msg = tamper
    h.run()
    r = h.result
    assert isinstance(r, HandshakeFailed) and r.leg == "upstream" and "challenge ack" in r.reason


def test_unknown_name():
    h = Harness(ini=FakeInitiator("stranger@10.0.0.9", DOWN_COOKIE, T))
    h.run()
    assert h.ini.status == "not_allowed"
    assert h.result.reason == "unknown node stranger@10.0.0.9"
    assert not h.dialled


def test_name_me_refused():
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, flags=0xD07DF7FBC | DFlag.NAME_ME))
    h.run()
    assert h.ini.status == "not_allowed" and "NAME_ME" in h.result.reason
    assert not h.dialled


@pytest.mark.parametrize("name", ["noat", "a@b@c", "bad name@h", "x@", "\u00e9t\u00e9@h"])
def test_bad_name_closed_silently(name):
    h = Harness(ini=FakeInitiator(name, DOWN_COOKIE, T))
    h.cookies[name] = DOWN_COOKIE
    h.run()
    r = h.result
    assert isinstance(r, HandshakeFailed) and "invalid node name" in r.reason
    assert r.leg == "downstream" and h.down_sent == b"" and not h.dialled


def test_missing_mandatory():
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, flags=0xD07DF7FBD & ~DFlag.BIT_BINARIES
                                  & ~DFlag.MANDATORY_25_DIGEST))
    h.run()
    assert h.ini.status == "not_allowed" and "BIT_BINARIES" in h.result.reason


def test_digest_flag_counts_as_mandatory():
    flags = (0xD07DF7FBD & ~MANDATORY_25) | DFlag.MANDATORY_25_DIGEST
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, flags=flags))
    h.run()
    assert isinstance(h.result, HandshakeDone)
    # T sees the expanded bits; a (synthetic) digest-only dialler itself lacks them
    assert h.acc.negotiated == h.result.negotiated_flags
    assert h.acc.peer_flags & MANDATORY_25 == MANDATORY_25


def test_mandatory_26():
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, flags=0xD07DF7FBD & ~DFlag.V4_NC),
                mandatory=MANDATORY_25 | DFlag.UNLINK_ID | DFlag.V4_NC)
    h.run()
    assert h.ini.status == "not_allowed" and "V4_NC" in h.result.reason


def test_hidden_mask():
    h = Harness(flag_mask=PROXY_MASK & ~DFlag.PUBLISHED)
    h.run()
    assert isinstance(h.result, HandshakeDone)
    assert not h.acc.peer_flags & DFlag.PUBLISHED and not h.ini.peer_flags & DFlag.PUBLISHED
    assert h.ini.negotiated == h.acc.negotiated == h.result.negotiated_flags


def test_mask_callable_per_dialler():
    seen = []

    def mask_for(name):
        seen.append(name)
        return PROXY_MASK & ~DFlag.PUBLISHED
    h = Harness(flag_mask=mask_for)
    h.run()
    assert seen == [U1] and isinstance(h.result, HandshakeDone)
    assert not h.acc.peer_flags & DFlag.PUBLISHED
    assert not h.result.negotiated_flags & DFlag.PUBLISHED


def test_upstream_wrong_name():
    h = Harness(acc=FakeAcceptor("other@127.0.0.1", {U1: UP_COOKIE}))
    h.run()
    r = h.result
    assert isinstance(r, HandshakeFailed) and r.leg == "upstream"
    assert "other@127.0.0.1" in r.reason and "challenge" in r.reason
    assert all(m[:1] != b"N" for m in _split(h.down_sent))  # the dialler saw no challenge


def test_unknown_upstream_status_not_relayed():
    h = Harness(acc=FakeAcceptor(T, {U1: UP_COOKIE}, status="bogus"))
    h.run()
    assert isinstance(h.result, HandshakeFailed) and "bogus" in h.result.reason
    assert h.ini.status is None


@pytest.mark.parametrize("bytewise", [False, True])
def test_leftovers(bytewise):
    up_data = encode_frame(b"") + encode_frame(b"p\x83h\x01a\x07")
    down_data = encode_frame(b"p\x83h\x01a\x09")
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, pipelined=down_data),
                acc=FakeAcceptor(T, {U1: UP_COOKIE}, early_data=up_data), bytewise=bytewise)
    h.run()
    done = assert_done(h)
    assert done.leftover_downstream + h.post_done_down == down_data
    assert done.leftover_upstream + h.post_done_up == up_data
    if not bytewise:
        assert done.leftover_downstream == down_data


def test_upstream_data_before_downstream_finishes():
    """T talks right after its 'a' while the dialler is still computing 'r'."""
    up_data = encode_frame(b"p" * 10) * 3
    relay = HandshakeRelay(T, {U1: DOWN_COOKIE}.get, UP_COOKIE, now=0.0,
                           challenge_source=lambda: 424242)
    acc = FakeAcceptor(T, {U1: UP_COOKIE})
    ini = FakeInitiator(U1, DOWN_COOKIE, T)
    evs = relay.receive_downstream(ini.start(), 0.0)
    assert isinstance(evs[-1], DialUpstream)
    evs = relay.upstream_connected(0.1)
    to_acc = b"".join(e.data for e in evs if isinstance(e, SendUpstream))
    evs = relay.receive_upstream(acc.feed(to_acc), 0.2)
    to_ini = b"".join(e.data for e in evs if isinstance(e, SendDownstream))
    to_acc = b"".join(e.data for e in evs if isinstance(e, SendUpstream))
    assert to_ini.endswith(T.encode())  # status + challenge went down
    evs = relay.receive_upstream(acc.feed(to_acc), 0.3)  # the 'a'
    assert evs == [] and relay.upstream_done
    assert relay.receive_upstream(up_data[:7], 0.4) == []
    assert relay.receive_upstream(up_data[7:], 0.5) == []
    reply = ini.feed(to_ini)  # status + challenge -> 'r'
    evs = relay.receive_downstream(reply, 0.6)
    done = evs[-1]
    assert isinstance(done, HandshakeDone) and done.leftover_upstream == up_data
    assert isinstance(evs[0], SendDownstream) and ini.feed(evs[0].data) == b""
    assert ini.state == "done"
    with pytest.raises(RuntimeError):
        relay.receive_upstream(b"x", 0.7)


def test_deadlines():
    relay = HandshakeRelay(T, {U1: DOWN_COOKIE}.get, UP_COOKIE, now=100.0)
    assert relay.tick(106.9) == []
    assert relay.next_deadline() == 107.0
    [f] = relay.tick(107.5)
    assert f.reason == "timeout waiting for downstream send_name" and f.leg == "downstream"

    relay = HandshakeRelay(T, {U1: DOWN_COOKIE}.get, UP_COOKIE, now=0.0)
    ini = FakeInitiator(U1, DOWN_COOKIE, T)
    relay.receive_downstream(ini.start(), 5.0)
    assert relay.tick(11.9) == []  # the timer restarted at 5.0
    [f] = relay.tick(12.1)
    assert f.reason == "timeout waiting for upstream connection" and f.leg == "upstream"
    assert relay.tick(20) == [] and relay.receive_downstream(b"x", 20) == []

    relay = HandshakeRelay(T, {U1: DOWN_COOKIE}.get, UP_COOKIE, now=0.0)
    relay.receive_downstream(ini.start(), 1.0)
    relay.upstream_connected(2.0)
    [f] = relay.receive_upstream(b"", 9.5)  # an input after expiry also fails
    assert f.reason == "timeout waiting for upstream status"


def test_deadline_waiting_for_downstream_reply():
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T))
    h.ini._msg_orig = h.ini._msg
    h.ini._msg = lambda m: b"" if m[:1] == b"N" else h.ini._msg_orig(m)  # never replies
    h.run()
    assert h.relay.step == "downstream challenge reply"
    [f] = h.relay.tick(8.0)
    assert f.reason == "timeout waiting for downstream challenge reply" and f.leg == "downstream"


def test_old_n_c_path():
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, old=True))
    h.run()
    done = h.result
    assert isinstance(done, HandshakeDone), done
    assert h.ini.negotiated == h.acc.negotiated == done.negotiated_flags
    assert done.downstream_creation == h.ini.creation  # the real one, from 'c'
    assert h.acc.peer_creation != 0  # upstream got a proxy-chosen creation
    assert done.downstream_flags == h.ini.flags


@pytest.mark.parametrize("bytewise", [False, True])
def test_old_n_c_path_flag_mismatch(bytewise):
    flags = 0xD07DF7FBD & ~DFlag.ALIAS  # OTP 23-like: no ALIAS
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, old=True, flags=flags), bytewise=bytewise)
    h.run()
    r = h.result
    assert isinstance(r, HandshakeFailed) and "real flags differ" in r.reason
    assert "ALIAS" in r.detail and h.ini.status == "ok"
    assert h.down_sent.endswith(p2(b"snot_allowed"))


def test_old_n_missing_high_mandatory():
    flags = 0xD07DF7FBD & ~DFlag.V4_NC
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, old=True, flags=flags),
                mandatory=MANDATORY_25 | DFlag.UNLINK_ID | DFlag.V4_NC,
                old_name_high_flags=DFlag.SPAWN | DFlag.ALIAS)
    h.run()
    r = h.result
    assert isinstance(r, HandshakeFailed) and "V4_NC" in r.reason and "after 'c'" in r.reason


# -- garbage and truncation at every step -------------------------------------------------


def _transcript():
    h = Harness()
    h.run()
    assert_done(h)
    return h.from_ini, h.from_acc


def _split(data):
    out, i = [], 0
    while i < len(data):
        n = struct.unpack(">H", data[i:i + 2])[0]
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


def _replay(down_msgs, up_msgs, relay=None):
    """Feed recorded/mutated messages; reconnects are automatic. Only typed outcomes allowed."""
    relay = relay or HandshakeRelay(T, {U1: DOWN_COOKIE}.get, UP_COOKIE, now=0.0,
                                    challenge_source=lambda: 0x11223344)
    d, u = list(down_msgs), list(up_msgs)
    for _ in range(50):
        if relay.finished:
            break
        progressed = False
        if d:
            evs = relay.receive_downstream(d.pop(0), 0.0)
            progressed = True
            if any(isinstance(e, DialUpstream) for e in evs):
                relay.upstream_connected(0.0)
        if u and not relay.finished:
            relay.receive_upstream(u.pop(0), 0.0)
            progressed = True
        if not progressed:
            break
    assert relay.result is None or isinstance(relay.result, (HandshakeDone, HandshakeFailed))
    return relay


def test_truncated_and_garbage_at_every_step():
    down, up = _transcript()
    dm, um = _split(down), _split(up)
    for which, msgs in (("down", dm), ("up", um)):
        for i, m in enumerate(msgs):
            for bad in (m[:1], m[:-1], m + b"\x00", b"", b"\xff" + m[1:], b"garbage"):
                mutated = msgs[:i] + [bad] + msgs[i + 1:]
                wire = [p2(x) for x in mutated]
                if which == "down":
                    r = _replay(wire, [p2(x) for x in um])
                else:
                    r = _replay([p2(x) for x in dm], wire)
                # a trailing byte after a v6 name is legal (OTP ignores it)
                if isinstance(r.result, HandshakeFailed):
                    assert r.result.reason


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hypothesis_mutations(data):
    down, up = _transcript()
    streams = [bytearray(down), bytearray(up)]
    for s in streams:
        for _ in range(data.draw(st.integers(0, 3))):
            if not s:
                break
            i = data.draw(st.integers(0, len(s) - 1))
            s[i] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(s)))
        del s[cut:cut + data.draw(st.integers(0, 3))]
    chunk = data.draw(st.integers(1, 40))
    d = [bytes(streams[0][i:i + chunk]) for i in range(0, len(streams[0]), chunk)]
    u = [bytes(streams[1][i:i + chunk]) for i in range(0, len(streams[1]), chunk)]
    _replay(d, u)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_hypothesis_garbage(down, up):
    _replay([down], [up])


# -- the single-leg machines directly ----------------------------------------------------


def test_acceptor_machine_order_errors():
    a = AcceptorHandshake(lambda: 7)
    with pytest.raises(HandshakeError):
        a.send_challenge(0, 1, T, b"c")
    [ev] = a.receive_data(p2(encode_name(0xD07DF7FBD, 5, U1.encode()) + b"junk"))
    assert isinstance(ev, NameReceived) and ev.name.full == U1 and ev.creation == 5
    assert a.state is AState.NAME_RECEIVED
    assert a.receive_data(p2(b"r" + b"\x00" * 20)) == []  # buffered until a challenge is out
    a.send_status("ok")
    a.send_challenge(0xD07DF7FBD, 9, T, b"cookie")
    with pytest.raises(WrongCookie):
        a.receive_data()
    assert a.state is AState.ERROR
    with pytest.raises(WrongCookie):
        a.receive_data(b"")


def test_acceptor_accepts_right_digest():
    a = AcceptorHandshake(lambda: 7)
    a.receive_data(p2(encode_name(0xD07DF7FBD, 5, U1.encode())))
    a.send_status("ok")
    a.send_challenge(0xD07DF7FBD, 9, T, b"cookie")
    [ev] = a.receive_data(p2(b"r" + struct.pack(">I", 55) + gen_digest(7, b"cookie")))
    ack = a.send_ack()
    assert ack == p2(b"a" + hashlib.md5(b"cookie55").digest())
    assert a.state is AState.DONE


def test_initiator_machine():
    i = InitiatorHandshake(T, lambda: 3)
    data = i.send_name(0xD07DF7FBD, 77, U1)
    assert data[2:3] == b"N" and data.endswith(U1.encode())
    with pytest.raises(HandshakeError):
        i.send_name(1, 1, U1)
    [st_] = i.receive_data(p2(b"sok"))
    assert st_.status == "ok" and i.state is IState.AWAIT_CHALLENGE
    body = b"N" + struct.pack(">QIIH", 0xD07DF7FBD, 1000, 42, len(T)) + T.encode()
    [ch] = i.receive_data(p2(body))
    assert ch.challenge == 1000 and ch.creation == 42
    r = i.send_reply(b"k")
    assert r == p2(b"r" + struct.pack(">I", 3) + hashlib.md5(b"k1000").digest())
    [ok] = i.receive_data(p2(b"a" + hashlib.md5(b"k3").digest()) + b"\x00\x00\x00\x00")
    assert i.state is IState.DONE and i.leftover() == b"\x00\x00\x00\x00"


@pytest.mark.parametrize("status", [b"snamed:", b"sweird", b"x", b"s\xff"])
def test_initiator_bad_status(status):
    i = InitiatorHandshake(T)
    i.send_name(0xD07DF7FBD, 77, U1)
    with pytest.raises(HandshakeError):
        i.receive_data(p2(status))


def test_initiator_rejects_challenge_without_mandatory():
    i = InitiatorHandshake(T)
    i.send_name(0xD07DF7FBD, 77, U1)
    i.receive_data(p2(b"sok"))
    body = b"N" + struct.pack(">QIIH", 1, 1000, 42, len(T)) + T.encode()
    with pytest.raises(HandshakeError, match="mandatory"):
        i.receive_data(p2(body))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 64), st.sampled_from(["ok", "ok_simultaneous", "alive"]), st.booleans())
def test_any_chunking(chunk, status, old):
    h = Harness(ini=FakeInitiator(U1, DOWN_COOKIE, T, old=old),
                acc=FakeAcceptor(T, {U1: UP_COOKIE}, status=status,
                                 early_data=encode_frame(b"p\x83j")), bytewise=chunk)
    h.run()
    done = h.result
    assert isinstance(done, HandshakeDone), done
    assert h.ini.negotiated == h.acc.negotiated == done.negotiated_flags
    assert done.leftover_upstream + h.post_done_up == encode_frame(b"p\x83j")


def test_close_during_handshake_names_step():
    relay = HandshakeRelay(T, {U1: DOWN_COOKIE}.get, UP_COOKIE, now=0.0)
    relay.receive_downstream(FakeInitiator(U1, DOWN_COOKIE, T).start(), 0.0)
    [f] = relay.upstream_failed("connection refused")
    assert f.leg == "upstream" and "upstream connection" in f.reason
    assert f.detail == "connection refused"
    assert relay.upstream_failed("again") == [] and relay.downstream_closed() == []

    relay = HandshakeRelay(T, {U1: DOWN_COOKIE}.get, UP_COOKIE, now=0.0)
    [f] = relay.downstream_closed()
    assert f.leg == "downstream" and "downstream send_name" in f.reason
