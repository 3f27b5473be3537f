-- hello_scenario: an application scenario for bin/lwsp-run (--run this file).
-- It returns a function of ctx: ctx.host and ctx.wsp are lwsp's host and
-- constants, ctx.tcp/ctx.udp the catalog entries at the top of the chain,
-- ctx.base the base provider's entries, ctx.connected() a client through the
-- chain and its accepted peer, ctx.check(label, ...) narrates a result.
return function(ctx)
  local host = ctx.host
  local c, a = ctx.connected()
  ctx.check("client: request", host.send(c, "GET /hello HTTP/1.0\r\n\r\n"))
  local req = ctx.check("server: read the request", host.recv(a, 200))
  local path = req:match("^GET (%S+)")
  ctx.check("server: reply", host.send(a, "HTTP/1.0 200 OK\r\n\r\nhello from " .. path))
  host.shutdown(a, ctx.wsp.SD_SEND)
  local reply = {}
  repeat
    local chunk = ctx.check("client: read", host.recv(c, 200))
    reply[#reply + 1] = chunk
  until chunk == ""
  host.close(c)
  host.close(a)
  local body = table.concat(reply):match("\r\n\r\n(.*)$")
  ctx.say("body: " .. tostring(body))
  return body == "hello from /hello" or nil, "unexpected reply: " .. table.concat(reply)
end
