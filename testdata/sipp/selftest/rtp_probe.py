#!/usr/bin/env python3
"""RTP helpers for selftest.sh (standard library only).

  rtp_probe.py ports N          print N distinct free UDP+TCP ports on 127.0.0.1;
                                each P also has P+2 free (SIPp's -mp binds both)
  rtp_probe.py sink PORT SECS MIN [--ssrc HEX] [--tone FILE]
                                receive RTP on PORT for SECS seconds; exit 0 if
                                at least MIN packets arrived, all PCMU (PT 0),
                                from one source, with 160-byte payloads (and
                                SSRC HEX; and each payload a 160-byte slice of
                                the looped u-law FILE)
  rtp_probe.py echo PORT PEER SECS MIN
                                send a 20 ms PCMU packet every 20 ms from PORT
                                to 127.0.0.1:PEER for SECS seconds; exit 0 if at
                                least MIN of them came back byte-identical
"""
import socket
import struct
import sys
import time


def udp_tcp_free(port):
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", port))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", port))
    except OSError:
        return False
    u.close()
    t.close()
    return True


def ports(n):
    out = []
    while len(out) < n:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        p -= p % 2
        if p in out or p + 2 > 65535:
            continue
        if udp_tcp_free(p) and udp_tcp_free(p + 2):
            out.append(p)
    print(" ".join(map(str, out)))
    return 0


def sink(port, secs, minimum, ssrc=None, tone=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(0.1)
    end = time.time() + secs
    n, bad, srcs, ssrcs = 0, [], set(), set()
    looped = tone + tone[:160] if tone else None
    while time.time() < end:
        try:
            d, a = s.recvfrom(4096)
        except socket.timeout:
            continue
        n += 1
        srcs.add(a)
        if len(d) < 12 or d[0] >> 6 != 2:
            bad.append("not RTP")
            continue
        ssrcs.add(struct.unpack("!I", d[8:12])[0])
        if d[1] & 0x7F != 0:
            bad.append("PT %d" % (d[1] & 0x7F))
        if len(d) != 172:
            bad.append("length %d" % len(d))
        elif looped and looped.find(d[12:]) < 0:
            bad.append("payload not from the tone file")
    ok = n >= minimum and not bad and len(srcs) == 1
    if ssrc is not None and ssrcs != {ssrc}:
        ok = False
    print("rtp sink: %d packets from %s, ssrcs %s, problems %s"
          % (n, sorted(srcs), sorted("%08x" % x for x in ssrcs), sorted(set(bad))))
    return 0 if ok else 1


def echo(port, peer, secs, minimum):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    sent, back, seq = {}, 0, 0
    end = time.time() + secs
    next_send = time.time()
    while time.time() < end:
        now = time.time()
        if now >= next_send:
            pkt = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x0E0C40) + bytes([0xFF - (seq & 0x7F)]) * 160
            sent[pkt] = True
            s.sendto(pkt, ("127.0.0.1", peer))
            seq += 1
            next_send += 0.02
        try:
            d, _ = s.recvfrom(4096)
            if d in sent:
                back += 1
        except BlockingIOError:
            time.sleep(0.002)
    print("rtp echo: sent %d, %d came back identical" % (seq, back))
    return 0 if back >= minimum else 1


def main(a):
    if a[0] == "ports":
        return ports(int(a[1]))
    if a[0] == "sink":
        ssrc = tone = None
        if "--ssrc" in a:
            ssrc = int(a[a.index("--ssrc") + 1], 16)
        if "--tone" in a:
            tone = open(a[a.index("--tone") + 1], "rb").read()
        return sink(int(a[1]), float(a[2]), int(a[3]), ssrc, tone)
    if a[0] == "echo":
        return echo(int(a[1]), int(a[2]), float(a[3]), int(a[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
