-- The source tree and what each build product carries: one source list
-- (src/sources.mk) that every build reads, and the exports of the built
-- libraries, checked at every build.
local H = require "helpers"

local function read(path)
  local f = assert(io.open(H.root .. "/" .. path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function sh(cmd)
  local p = assert(io.popen(("cd '%s' && %s 2>&1"):format(H.root, cmd)))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

-- NAME -> {files} from src/sources.mk
local function lists()
  local out = {}
  for name, files in read("src/sources.mk"):gsub("\\\r?\n", " "):gmatch("([%u_]+)_SRCS%s*=%s*([^\n]*)") do
    local t = {}
    for f in files:gmatch("%S+") do t[#t + 1] = f end
    out[name] = t
  end
  return out
end

describe("src/sources.mk, the one source list #posix", function()
  it("names every C file under src/, and only files that exist", function()
    local listed = {}
    for _, files in pairs(lists()) do
      for _, f in ipairs(files) do
        listed[f] = true
        assert.is_truthy(io.open(H.root .. "/" .. f), f .. " is listed but does not exist")
      end
    end
    local found = sh("find src -name '*.c' | sort")
    local n = 0
    for f in found:gmatch("[^\n]+") do
      n = n + 1
      assert.is_true(listed[f] == true, f .. " is in no list of src/sources.mk")
    end
    assert.is_true(n > 20)
  end)

  it("is what the rockspec builds (tools/rockspec.lua wrote its lists)", function()
    local out, code = sh("lua5.4 tools/rockspec.lua --check")
    assert.are.equal(0, code, out)
    -- and the check can fail: a rockspec with one file left out differs
    local tmp = H.tmp .. "/lwsp-scm-1.rockspec"
    local f = assert(io.open(tmp, "wb"))
    f:write((read("lwsp-scm-1.rockspec"):gsub('"src/runtime/view%.c", ', "", 1)))
    f:close()
    out, code = sh("lua5.4 tools/rockspec.lua --check '" .. tmp .. "'")
    assert.are_not.equal(0, code, out)
    assert.matches("differs from src/sources.mk", out)
  end)

  it("is what tools/mingw-build.sh reads (tools/sources.sh)", function()
    local l = lists()
    local out, code = sh("tools/sources.sh SPI_SRCS RUNTIME_SRCS")
    assert.are.equal(0, code, out)
    assert.are.equal(table.concat(l.SPI, " ") .. " " .. table.concat(l.RUNTIME, " "), (out:gsub("\n$", "")))
    assert.matches("tools/sources.sh", read("tools/mingw-build.sh"), 1, true)
    assert.is_nil(read("tools/mingw-build.sh"):find("src/runtime/lwsp.c", 1, true))
  end)
end)
