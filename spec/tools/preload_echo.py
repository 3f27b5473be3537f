import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(4)
port = srv.getsockname()[1]
def serve():
    c, a = srv.accept()
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
t = threading.Thread(target=serve); t.start()
c = socket.create_connection(("127.0.0.1", port))
peer_ok = c.getpeername()[1] == port
data = bytes(range(256)) * 4096
c.sendall(data); c.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = c.recv(65536)
    if not d: break
    got += d
t.join()
print("echo", len(got), got == data, peer_ok)
import urllib.request
print("urllib", len(urllib.request.urlopen(sys.argv[1]).read()))
