-- The reference cannot drift: every function the Lua side exports has an
-- entry, an LDoc comment at its definition (what `make ldoc` publishes) or a
-- mention in docs/api.md.
local H = require "helpers"

local function read(path) return assert(io.open(H.root .. "/" .. path)):read("a") end
local api = read("docs/api.md")

-- Names with an LDoc block ("--- ...") right above `function mod.name` or `mod.name =`.
local function documented(source, var)
  local out, prev_doc = {}, false
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^function " .. var .. "[.:]([%w_]+)") or line:match("^" .. var .. "%.([%w_]+)%s*=")
    if name and prev_doc then out[name] = true end
    if line:match("^%-%-%-") or (prev_doc and line:match("^%-%-")) then prev_doc = true
    elseif not name then prev_doc = false end
  end
  return out
end

local function in_api(prefix, name)
  local short = prefix:match("([%w_]+%.)$") or prefix
  return api:find("`" .. prefix .. name, 1, true) or api:find("`" .. short .. name, 1, true) or api:find(prefix .. name .. "(", 1, true)
    or api:find("`" .. name .. "(", 1, true) or api:find("`" .. name .. "`", 1, true)
end

local modules = {
  {"wsp", "lua/wsp/init.lua", "wsp"},
  {"wsp.host", "lua/wsp/host.lua", "host"},
  {"wsp.layered", "lua/wsp/layered.lua", "layered"},
  {"wsp.trace", "lua/wsp/trace.lua", "trace"},
  {"wsp.catalog", "lua/wsp/catalog.lua", "catalog"},
  {"wsp.test", "lua/wsp/test.lua", "T"},
}

describe("the Lua API reference", function()
  for _, m in ipairs(modules) do
    it("has an entry for every function " .. m[1] .. " exports", function()
      local mod = require(m[1])
      local docs = documented(read(m[2]), m[3])
      if m[1] == "wsp.test" then
        for k, v in pairs(documented(read(m[2]), "test")) do docs[k] = v end
        mod = setmetatable({}, {__index = function() end})
        for k, v in pairs(require "wsp.test") do mod[k] = v end
        H.mkdir(H.tmp .. "/ref")
        local T = require("wsp.test").new({dir = H.tmp .. "/ref"})
        for k, v in pairs(getmetatable(T).__index) do mod[k] = v end
        if not H.windows then require("lwsp").registry.set_root(H.tmp .. "/registry") end
        require("lwsp").set_log(H.logfile)
      end
      local missing = {}
      for name, v in pairs(mod) do
        if type(v) == "function" and not name:match("^_") and not docs[name] and not in_api(m[1] .. ".", name) then
          missing[#missing + 1] = name
        end
      end
      table.sort(missing)
      assert.same({}, missing, m[1] .. ": no LDoc comment and no entry in docs/api.md")
    end)
  end

  it("has an entry in docs/api.md for every function of the C module lwsp and lwsp.host", function()
    local lwsp = require "lwsp"
    local missing = {}
    for _, t in ipairs{{lwsp, "lwsp."}, {require "lwsp.host", "host."}, {lwsp.registry, "registry."}} do
      for name, v in pairs(t[1]) do
        if type(v) == "function" and not in_api(t[2], name) then missing[#missing + 1] = t[2] .. name end
      end
    end
    table.sort(missing)
    assert.same({}, missing, "functions with no entry in docs/api.md")
  end)
end)
