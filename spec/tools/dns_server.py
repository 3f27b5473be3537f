#!/usr/bin/env python3
"""A small DNS server for lwsp's specs: UDP and TCP on 127.0.0.1, one port.

  dns_server.py LOGFILE NAME=ADDR[,ADDR...] ... [--truncate NAME] [--cname ALIAS=NAME]

Answers A and AAAA queries for the names given (IPv4 and IPv6 addresses
alike), a CNAME for each alias, NXDOMAIN for any other name.  A name given
with --truncate is answered over UDP with the TC bit and no records, so the
client must ask again over TCP.  Prints "port N" on stdout, then appends
one line per query to LOGFILE: "udp|tcp NAME TYPE".
"""
import ipaddress
import socket
import struct
import sys
import threading

names, cnames, truncate = {}, {}, set()
args = sys.argv[2:]
i = 0
while i < len(args):
    a = args[i]
    if a == "--truncate":
        truncate.add(args[i + 1].lower()); i += 2; continue
    if a == "--cname":
        alias, target = args[i + 1].split("=", 1)
        cnames[alias.lower()] = target.lower(); i += 2; continue
    name, addrs = a.split("=", 1)
    names[name.lower()] = [ipaddress.ip_address(x) for x in addrs.split(",")]
    i += 1

lock = threading.Lock()


def log(line):
    with lock:
        with open(sys.argv[1], "a") as f:
            f.write(line + "\n")


def qname(msg, off):
    labels = []
    while True:
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels), off
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n


def encode(name):
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def answer(msg, transport):
    ident, flags = struct.unpack(">HH", msg[:4])
    name, off = qname(msg, 12)
    qtype, qclass = struct.unpack(">HH", msg[off:off + 4])
    question = msg[12:off + 4]
    log("%s %s %s" % (transport, name, {1: "A", 28: "AAAA"}.get(qtype, str(qtype))))
    key = name.lower()
    records = []
    if key in cnames:
        records.append((encode(name), 5, encode(cnames[key])))
        key = cnames[key]
        owner = encode(key)
    else:
        owner = encode(name)
    rcode = 0
    if key not in names:
        rcode = 3
        records = []
    else:
        for ip in names[key]:
            if qtype == 1 and ip.version == 4:
                records.append((owner, 1, ip.packed))
            elif qtype == 28 and ip.version == 6:
                records.append((owner, 28, ip.packed))
    tc = transport == "udp" and name.lower() in truncate
    if tc:
        records = []
    head = struct.pack(">HHHHHH", ident, 0x8180 | (0x0200 if tc else 0) | rcode, 1, len(records), 0, 0)
    body = b"".join(o + struct.pack(">HHIH", t, 1, 60, len(d)) + d for o, t, d in records)
    return head + question + body


def serve_udp(u):
    while True:
        msg, peer = u.recvfrom(512)
        try:
            u.sendto(answer(msg, "udp"), peer)
        except Exception as e:  # a malformed query: no answer
            log("bad %r" % e)


def serve_tcp_conn(c):
    with c:
        while True:
            head = c.recv(2)
            if len(head) < 2:
                return
            (n,) = struct.unpack(">H", head)
            msg = b""
            while len(msg) < n:
                part = c.recv(n - len(msg))
                if not part:
                    return
                msg += part
            out = answer(msg, "tcp")
            c.sendall(struct.pack(">H", len(out)) + out)


def serve_tcp(t):
    while True:
        c, _ = t.accept()
        threading.Thread(target=serve_tcp_conn, args=(c,), daemon=True).start()


t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 0))
port = t.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", port))
t.listen(16)
threading.Thread(target=serve_tcp, args=(t,), daemon=True).start()
print("port %d" % port, flush=True)
serve_udp(u)
