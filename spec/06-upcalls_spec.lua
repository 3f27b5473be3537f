-- Every upcall, and WPUCompleteOverlappedRequest, called from a provider
-- script and checked against the host's state.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

describe("the upcall table in Lua", function()
  local r, s
  local function run(code)
    local out = assert(host.ioctl(s, 0x7100, code, 1024))
    return assert(load(out))()
  end

  before_each(function()
    r = H.provider("spec/providers/upcaller.lua")
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  it("creates, queries and closes socket handles", function()
    local h = run(("return up.create_socket_handle(%d, 12345)"):format(r.tcp))
    assert.is_number(h)
    local info = host.socket_info(h)
    assert.equal(12345, info.context)
    assert.equal(r.tcp, info.catalog)
    assert.equal(12345, run(("return up.query_socket_handle_context(%d)"):format(h)))
    assert.is_true(run(("return up.close_socket_handle(%d)"):format(h)))
    H.fails_with("WSAENOTSOCK", host.socket_info(h))
    H.fails_with("WSAENOTSOCK", run(("return up.query_socket_handle_context(%d)"):format(h)))
    H.fails_with("WSAENOTSOCK", run(("return up.close_socket_handle(%d)"):format(h)))
    H.fails_with("WSAEINVALIDPROVIDER", run("return up.create_socket_handle(999999, 1)"))
  end)

  it("registers IFS handles", function()
    assert.equal(0x9000, run(("return up.modify_ifs_handle(%d, 0x9000)"):format(r.tcp)))
    assert.is_true(host.socket_info(0x9000).ifs)
    -- an IFS handle has no context, and it is not one of lwsp's sockets: not the script's to query
    H.fails_with("WSAENOTSOCK", run("return up.query_socket_handle_context(0x9000)"))
    H.fails_with("WSAEINVAL", run(("return up.modify_ifs_handle(%d, 0x9000)"):format(r.tcp)))
    H.fails_with("WSAEINVALIDPROVIDER", run("return up.modify_ifs_handle(999999, 0x9004)"))
  end)

  it("creates, sets, resets and closes events", function()
    local ev = run("return up.create_event()")
    assert.is_false(host.event_state(ev))
    assert.is_true(run(("return up.set_event(%d)"):format(ev)))
    assert.is_true(host.event_state(ev))
    assert.equal(1, host.wait({ev}, false, 0))
    assert.is_true(run(("return up.reset_event(%d)"):format(ev)))
    assert.is_false(host.event_state(ev))
    assert.equal("timeout", host.wait({ev}, false, 0))
    assert.is_true(run(("return up.close_event(%d)"):format(ev)))
    H.fails_with("WSA_INVALID_HANDLE", host.event_state(ev))
    H.fails_with("WSA_INVALID_HANDLE", run(("return up.set_event(%d)"):format(ev)))
    H.fails_with("WSA_INVALID_HANDLE", run(("return up.close_event(%d)"):format(ev)))
  end)

  it("never takes a closed event's handle for a later event", function()
    local old, new, fresh = {}, {}, {}
    for i = 1, 64 do old[i] = assert(host.create_event()) end
    for i = 1, 64 do assert.is_true(host.close_event(old[i])) end
    for i = 1, 64 do new[i] = assert(host.create_event()); fresh[new[i]] = true end
    local stale = 0
    for i = 1, 64 do
      if not fresh[old[i]] then   -- (Windows may give a closed handle's value to a new event)
        stale = stale + 1
        H.fails_with("WSA_INVALID_HANDLE", host.event_state(old[i]))
        H.fails_with("WSA_INVALID_HANDLE", host.set_event(old[i]))
        H.fails_with("WSA_INVALID_HANDLE", host.wait({new[1], old[i]}, false, 0))
      end
    end
    if not H.windows then assert.equal(64, stale) end   -- the host's own events: never reused
    assert.equal("timeout", host.wait(new, false, 0))
    assert.is_true(host.set_event(new[40]))
    assert.equal(40, host.wait(new, false, 0))
    for i = 1, 64 do assert.equal(i == 40, host.event_state(new[i])) end
    for i = 1, 64 do assert.is_true(host.close_event(new[i])) end
  end)

  it("hands out objects the system knows by kind: events, ports, windows, threads", function()
    -- on Windows the kernel answers (NtQueryObject, IsWindow): the host's objects are real ones
    local ev = run("return up.create_event()")
    local port, w, thread = host.port(), host.window(), select(3, host.thread_id())
    assert.equal("event", host.object_type(ev))
    assert.equal("port", host.object_type(port))
    assert.equal("window", host.object_type(w))
    assert.equal("thread", host.object_type(thread))
    assert.is_true(run(("return up.close_event(%d)"):format(ev)))
    assert.is_true(host.close_object(port))
    assert.is_true(host.close_object(w))
    assert.is_nil(host.object_type(ev))
    assert.is_nil(host.object_type(w))
  end)

  it("checks fd_set membership", function()
    assert.is_true(run("return up.fd_isset(7, {3, 5, 7})"))
    assert.is_false(run("return up.fd_isset(7, {3, 5})"))
    assert.is_false(run("return up.fd_isset(7, {})"))
  end)

  it("finds a provider's DLL path by GUID", function()
    assert.equal(lwsp.path(), run(("return up.get_provider_path(%q)"):format(r.guid)))
    H.fails_with("WSAEINVAL", run(("return up.get_provider_path(%q)"):format(lwsp.guid())))
  end)

  it("posts messages to the window the application selected for the socket", function()
    local w = host.window()
    assert.is_true(host.async_select(s, w, 0x401, wsp.FD_READ))
    assert.is_true(run(("return up.post_message(%d, 0x401, %d, 0x00200001)"):format(w, s)))
    local msgs = host.messages(w)
    assert.equal(1, #msgs)
    assert.same({msg = 0x401, wparam = s, lparam = 0x00200001, event = 1, error = 0x20}, msgs[1])
    H.fails_with("WSAEINVAL", run(("return up.post_message(4242, 0x401, %d, 3)"):format(s)))
    H.fails_with("WSAEINVAL", run(("return up.post_message(%d, 0x402, %d, 3)"):format(w, s)))
    assert.same({}, host.messages(w))
    host.close_object(w)
  end)

  it("queries this thread's blocking hook", function()
    host.blocking_hook(false)
    assert.is_false(run("return up.query_blocking_callback()"))
    host.blocking_hook(true)
    local addr, ctx = run("return up.query_blocking_callback()")
    assert.is_number(addr)
    assert.equal((host.thread_id()), ctx)
    host.blocking_hook(false)
    H.fails_with("WSAEINVAL", run("return up.query_blocking_callback(999999)"))
  end)

  it("queues APCs that run only in an alertable wait on the thread that was opened", function()
    local refs = host.thread_refs()
    assert.is_true(run("T = up.open_current_thread() return T ~= nil"))
    assert.equal(refs + 1, host.thread_refs())
    local mark = H.mark()
    assert.is_true(run("return up.queue_apc(T, function() lwsp.log('apc ran', 'apc') end)"))
    assert.is_nil(H.find_log(mark, "apc ran", true))
    assert.equal("timeout", host.sleep(0, false))
    assert.is_nil(H.find_log(mark, "apc ran", true))
    assert.equal("io_completion", host.sleep(1000, true))
    assert.truthy(H.find_log(mark, "apc ran", true))
    assert.is_true(run("return up.close_thread(T)"))
    assert.equal(refs, host.thread_refs())
    assert.has_error(function() run("return up.queue_apc(T, print)") end)
  end)

  it("completes overlapped requests: event, completion port, and no packet when the event's low bit is set", function()
    -- the overlapped a handler may complete is the one its own call was given (WSPGetOverlappedResult's)
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    local port = host.port()
    assert.is_true(host.associate(s, port, 77))
    run([[on_result = function(s, ov, wait)
      R = {up.complete_overlapped_request(s.handle, ov, wait and 0 or wsp.WSAECONNRESET, wait and 321 or 5)}
      return 0, 0
    end]])
    assert.equal(0, host.get_overlapped_result(s, ov, true))
    assert.same({true}, {run("return table.unpack(R)")})
    assert.is_true(host.event_state(ev))
    assert.equal(321, ov.InternalHigh)
    assert.equal(0, ov.OffsetHigh)
    assert.equal(0, ov.Internal)
    local bytes, key, addr = host.dequeue(port, 0)
    assert.equal(321, bytes)
    assert.equal(77, key)
    assert.equal(ov.address, addr)
    host.reset_event(ev)
    local quiet = host.overlapped(ev | 1)
    assert.equal(0, host.get_overlapped_result(s, quiet, false))
    assert.same({true}, {run("return table.unpack(R)")})
    assert.is_true(host.event_state(ev))
    assert.equal(wsp.WSAECONNRESET, quiet.OffsetHigh)
    assert.same({nil, "timeout"}, {host.dequeue(port, 0)})
    run([[on_result = function(s, ov)
      R = {up.complete_overlapped_request(4242, ov, 0, 1)}
      return 0, 0
    end]])
    assert.equal(0, host.get_overlapped_result(s, ov, false))
    H.fails_with("WSAENOTSOCK", run("return table.unpack(R)"))
    host.close_object(port)
  end)

  it("leaves the host's lock free when a host call is given a bad argument", function()
    -- each call reads its arguments before it takes the lock: an argument
    -- error raised with the lock held would leave every other thread waiting
    local port = host.port()
    assert.has_error(function() host.post(port, "many", 1) end)
    assert.has_error(function() host.post(port, 1, 2, "overlapped") end)
    assert.has_error(function() host.associate(s, port, "key") end)
    assert.has_error(function() host.remove("id") end)
    assert.has_error(function() host.inject("WSPSend", {seed = "seed"}) end)
    host.inject()
    -- another thread needs the lock to start and to run its call
    assert.is_false(host.spawn("sleep", 1):join(5000))
    assert.is_true(host.post(port, 3, 4))
    assert.same({3, 4, 0}, {host.dequeue(port, 0)})
    host.close_object(port)
  end)
end)
