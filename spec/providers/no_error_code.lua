-- Handlers that fail without a usable error code (spec/26-foreign_host_spec.lua).
return {
  description = "fails badly",
  socket = function() return true end,
  bind = function() return nil, 0 end,
  listen = function() return nil, -5 end,
  shutdown = function() return false, "nonsense" end,
  closesocket = function() return true end,
}
