#!/usr/bin/python3
"""pktlog.py -- a minimal packet logger for the failover benchmarks (there
is no tcpdump on the test machines): one line per ARP packet and per TCP
segment to or from --port seen on --dev, with a wall-clock timestamp and
the source MAC (which host sent it), until --stop-file exists.

    pktlog.py --out FILE --stop-file F [--dev eth0] [--port 6379]

Run it inside a namespace (ip netns exec NS /usr/bin/python3 pktlog.py ...).
Line: "wall_s srcmac src:sport > dst:dport FLAGS seq= ack= win= len=".
"""
import argparse
import os
import socket
import struct
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--dev", default="eth0")
    ap.add_argument("--port", type=int, default=6379)
    a = ap.parse_args()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((a.dev, 0))
    s.settimeout(0.2)
    out = open(a.out, "w", buffering=1)
    while not os.path.exists(a.stop_file):
        try:
            pkt = s.recv(65535)
        except socket.timeout:
            continue
        t = time.time()
        if len(pkt) < 34:
            continue
        et = struct.unpack("!H", pkt[12:14])[0]
        smac = pkt[6:12].hex(":")
        if et == 0x0806 and len(pkt) >= 42:
            op = struct.unpack("!H", pkt[20:22])[0]
            out.write(f"{t:.6f} {smac} ARP {'request' if op == 1 else 'reply'} "
                      f"{socket.inet_ntoa(pkt[28:32])} -> "
                      f"{socket.inet_ntoa(pkt[38:42])}\n")
            continue
        if et != 0x0800 or pkt[23] != 6:
            continue
        ip = pkt[14:]
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:]
        if len(tcp) < 20:
            continue
        sp, dp, seq, ack = struct.unpack("!HHII", tcp[:12])
        if a.port not in (sp, dp):
            continue
        flags = "".join(c for c, b in zip("FSRPA", (1, 2, 4, 8, 16))
                        if tcp[13] & b)
        win = struct.unpack("!H", tcp[14:16])[0]
        ln = struct.unpack("!H", ip[2:4])[0] - ihl - (tcp[12] >> 4) * 4
        out.write(f"{t:.6f} {smac} {socket.inet_ntoa(ip[12:16])}:{sp} > "
                  f"{socket.inet_ntoa(ip[16:20])}:{dp} {flags} seq={seq} "
                  f"ack={ack} win={win} len={ln}\n")


if __name__ == "__main__":
    main()
