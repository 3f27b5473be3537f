# Python asyncio through the chain: a server and clients on one loop (epoll),
# and UDP with sendto/recvfrom on plain sockets.
import asyncio, socket

async def main():
    async def handle(r, w):
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async def client(i):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        msg = (b"%05d" % i) * 20000
        w.write(msg)
        w.write_eof()
        got = await r.read()
        w.close()
        return got == msg
    results = await asyncio.gather(*(client(i) for i in range(20)))
    srv.close()
    await srv.wait_closed()
    print("asyncio", sum(results), "of", len(results))

asyncio.run(main())
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b.sendto(b"ping", a.getsockname())
data, addr = a.recvfrom(100)
a.sendto(data.upper(), addr)
print("udp", b.recvfrom(100)[0].decode(), addr[1] == b.getsockname()[1])
s6 = socket.socket(socket.AF_INET6); s6.bind(("::1", 0)); s6.listen(1)
c6 = socket.create_connection(("::1", s6.getsockname()[1]))
x, _ = s6.accept(); c6.sendall(b"v6"); print("ipv6", x.recv(10).decode())
