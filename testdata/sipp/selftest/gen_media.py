#!/usr/bin/env python3
"""Regenerates the media files next to the SIPp scenarios (standard library only).

  pcmu_tone.pcap  5 s of a 1 kHz tone as RTP/PCMU (PT 0, 20 ms = 160 bytes a
                  packet, 250 packets) in an Ethernet/IPv4/UDP pcap, for
                  SIPp's play_pcap_audio. SIPp rewrites the addresses and
                  ports; the RTP header (seq, timestamp, SSRC 0x5EDA1A00)
                  is sent as written.
  pcmu_tone.ulaw  1 s of the same tone as headerless G.711 u-law, for SIPp's
                  rtp_stream (SIPp 3.6 reads the file raw: a .wav header
                  would be played as noise).

Run from anywhere: python3 testdata/sipp/selftest/gen_media.py
"""
import math
import os
import struct

RATE = 8000
PTIME_SAMPLES = 160  # 20 ms
FREQ = 1000.0
AMPLITUDE = 0.25  # of full scale, about -12 dBFS
SSRC = 0x5EDA1A00


def ulaw(sample):
    """G.711 u-law encode one 16-bit linear sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not (sample & mask):
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone(seconds):
    n = int(RATE * seconds)
    return bytes(
        ulaw(int(AMPLITUDE * 32767 * math.sin(2 * math.pi * FREQ * i / RATE)))
        for i in range(n)
    )


def ip_checksum(hdr):
    s = sum(struct.unpack("!%dH" % (len(hdr) // 2), hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pcap(payload, path):
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    sport, dport = 40000, 6000
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # LINKTYPE_ETHERNET
    seq, ts = 1000, 160000
    for i, off in enumerate(range(0, len(payload), PTIME_SAMPLES)):
        rtp = struct.pack("!BBHII", 0x80, 0x80 if i == 0 else 0x00, seq, ts, SSRC)  # marker on first
        rtp += payload[off:off + PTIME_SAMPLES]
        udp = struct.pack("!HHHH", sport, dport, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
        frame = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
        usec = i * 20000
        out.append(struct.pack("<IIII", usec // 1000000, usec % 1000000, len(frame), len(frame)))
        out.append(frame)
        seq = (seq + 1) & 0xFFFF
        ts = (ts + PTIME_SAMPLES) & 0xFFFFFFFF
    with open(path, "wb") as f:
        f.write(b"".join(out))


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pcap(tone(5), os.path.join(here, "pcmu_tone.pcap"))
    with open(os.path.join(here, "pcmu_tone.ulaw"), "wb") as f:
        f.write(tone(1))


if __name__ == "__main__":
    main()
