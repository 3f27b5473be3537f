-- Writes the rockspec's source lists from src/sources.mk, the one source list.
-- Each `sources = {...},  -- src/sources.mk: A B` line gets the files of the
-- lists A_SRCS and B_SRCS.  With --check it writes nothing and exits 1 when
-- the rockspec differs from what it would write.
--   lua5.4 tools/rockspec.lua [--check] [rockspec] [sources.mk]
local check = arg[1] == "--check"
local first = check and 2 or 1
local rockspec = arg[first] or "lwsp-scm-1.rockspec"
local mk = arg[first + 1] or "src/sources.mk"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- NAME_SRCS = a b \ c  ->  lists.NAME = {a, b, c}
local lists = {}
local text = read(mk):gsub("\\\r?\n", " ")
for name, files in text:gmatch("\n?([%u_]+)_SRCS%s*=%s*([^\n]*)") do
  local t = {}
  for f in files:gmatch("%S+") do t[#t + 1] = f end
  lists[name] = t
end

local function sources(names)
  local out = {}
  for name in names:gmatch("%S+") do
    local t = assert(lists[name], "src/sources.mk has no " .. name .. "_SRCS")
    for _, f in ipairs(t) do out[#out + 1] = ("%q"):format(f) end
  end
  return "{" .. table.concat(out, ", ") .. "}"
end

local old = read(rockspec)
local new = old:gsub("(\n%s*sources = )%b{}(,%s*%-%- src/sources%.mk: )([^\n]*)", function(pre, mid, names)
  return pre .. sources(names) .. mid .. names
end)
if check then
  if new ~= old then io.stderr:write(rockspec, " differs from src/sources.mk: run lua5.4 tools/rockspec.lua\n") os.exit(1) end
  return
end
if new ~= old then
  local f = assert(io.open(rockspec, "wb"))
  f:write(new)
  f:close()
end
