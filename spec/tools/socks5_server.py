#!/usr/bin/env python3
"""A minimal SOCKS5 proxy (no authentication, CONNECT to IPv4) for lwsp's
specs: prints its port, then one line per CONNECT it relays."""
import socket, struct, sys, threading

def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

def exactly(c, n):
    buf = b""
    while len(buf) < n:
        d = c.recv(n - len(buf))
        if not d:
            raise OSError("closed")
        buf += d
    return buf

def serve(c):
    try:
        ver, nmethods = exactly(c, 2)
        exactly(c, nmethods)
        c.sendall(b"\x05\x00")
        ver, cmd, _, atyp = exactly(c, 4)
        if atyp != 1 or cmd != 1:
            c.sendall(b"\x05\x08\x00\x01" + b"\0" * 6)
            return
        ip = socket.inet_ntoa(exactly(c, 4))
        port = struct.unpack(">H", exactly(c, 2))[0]
        try:
            up = socket.create_connection((ip, port))
        except OSError:
            c.sendall(b"\x05\x05\x00\x01" + b"\0" * 6)
            return
        print(f"CONNECT {ip}:{port}", flush=True)
        bound = up.getsockname()
        c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(bound[0]) + struct.pack(">H", bound[1]))
        t = threading.Thread(target=pipe, args=(up, c), daemon=True)
        t.start()
        pipe(c, up)
        t.join()
        up.close()
    except OSError:
        pass
    finally:
        c.close()

s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
