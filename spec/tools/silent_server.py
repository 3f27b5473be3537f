# A TCP listener on 127.0.0.1 that accepts and never answers (timeouts): prints its port.
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept())
