#!/usr/bin/env python3
"""A caller for selftest.sh that sends every request twice, back to back and
byte-identical, as a UDP retransmission would (standard library only).

  sip_retrans.py answer LOCALPORT UASPORT   INVITE x2 ; ... 200 ; ACK x2 ; BYE ; 200
  sip_retrans.py reject LOCALPORT UASPORT   INVITE x2 ; ... final >= 300 ; ACK x2
  sip_retrans.py cancel LOCALPORT UASPORT   INVITE x2 ; ... 180 ; CANCEL x2 ;
                                            200 (CANCEL) and 487 ; ACK x2

Prints what it received and exits 0 when the dialog ended as expected.
"""
import re
import socket
import sys
import time

mode, lport, rport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", lport))
peer = ("127.0.0.1", rport)
call_id = "retrans-%d-%d@127.0.0.1" % (lport, int(time.time() * 1000))
ruri = "sip:service@127.0.0.1:%d" % rport
from_hdr = "<sip:retrans@127.0.0.1:%d>;tag=rt%d" % (lport, lport)
to_hdr = "<%s>" % ruri
seen = []


def request(method, branch, cseq, to=to_hdr, body=""):
    lines = [
        "%s %s SIP/2.0" % (method, ruri),
        "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s" % (lport, branch),
        "Max-Forwards: 70",
        "From: " + from_hdr,
        "To: " + to,
        "Call-ID: " + call_id,
        "CSeq: %d %s" % (cseq, method),
        "Contact: <sip:retrans@127.0.0.1:%d>" % lport,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def twice(msg):
    s.sendto(msg, peer)
    s.sendto(msg, peer)


def read(until, secs=5.0):
    """Collect responses until until(code, cseq_method, msg) is true, then
    0.3 s more for duplicates. Returns the matching message or None."""
    end = time.time() + secs
    found = None
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            break
        msg = data.decode(errors="replace")
        first = msg.split("\r\n", 1)[0]
        if not first.startswith("SIP/2.0 "):
            seen.append(first.split(" ", 1)[0] + "<-")
            continue
        code = int(first.split()[1])
        method = re.search(r"(?im)^CSeq:\s*\d+\s+(\w+)", msg).group(1)
        seen.append("%d/%s" % (code, method))
        if found is None and until(code, method, msg):
            found = msg
            end = time.time() + 0.3
    return found


def to_of(msg):
    return re.search(r"(?im)^To:\s*(.*?)\s*$", msg).group(1)


sdp = ("v=0\r\no=rt 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
inv_branch = "z9hG4bK-rt-inv-%d" % lport
twice(request("INVITE", inv_branch, 1, body=sdp))
ok = False
if mode == "answer":
    final = read(lambda c, m, _: m == "INVITE" and c >= 200)
    if final and final.startswith("SIP/2.0 200"):
        twice(request("ACK", "z9hG4bK-rt-ack-%d" % lport, 1, to=to_of(final)))
        read(lambda c, m, _: False, 0.3)
        s.sendto(request("BYE", "z9hG4bK-rt-bye-%d" % lport, 2, to=to_of(final)), peer)
        ok = read(lambda c, m, _: m == "BYE" and c == 200) is not None
elif mode == "reject":
    final = read(lambda c, m, _: m == "INVITE" and c >= 300)
    if final:
        twice(request("ACK", inv_branch, 1, to=to_of(final)))
        read(lambda c, m, _: False, 0.3)
        ok = True
elif mode == "cancel":
    if read(lambda c, m, _: m == "INVITE" and c == 180):
        twice(request("CANCEL", inv_branch, 1))
        final = read(lambda c, m, _: m == "INVITE" and c == 487)
        if final:
            twice(request("ACK", inv_branch, 1, to=to_of(final)))
            read(lambda c, m, _: False, 0.3)
            ok = "200/CANCEL" in seen
print("retrans %s: received %s" % (mode, " ".join(seen)))
sys.exit(0 if ok else 1)
