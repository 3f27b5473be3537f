// Node through the chain: an http.get of a file (its sha256) and a net echo
// server and client (libuv: epoll, non-blocking connect).
const http = require("http"), net = require("net"), crypto = require("crypto");
const url = process.argv[2];
http.get(url, (res) => {
  const h = crypto.createHash("sha256");
  res.on("data", (d) => h.update(d));
  res.on("end", () => {
    console.log("http", res.statusCode, h.digest("hex"));
    const srv = net.createServer((c) => c.pipe(c));
    srv.listen(0, "127.0.0.1", () => {
      const port = srv.address().port;
      const data = Buffer.alloc(1 << 20, "abcdefgh");
      const c = net.connect(port, "127.0.0.1", () => { c.end(data); });
      const parts = [];
      c.on("data", (d) => parts.push(d));
      c.on("end", () => {
        console.log("echo", Buffer.concat(parts).equals(data));
        srv.close();
      });
    });
  });
}).on("error", (e) => { console.log("error", e.code); process.exit(1); });
