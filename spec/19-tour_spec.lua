-- docs/tour.md: every step's command runs (bin/lwsp-run over the host) and
-- prints the crossings the step talks about.
local H = require "helpers"

local function items(list)
  local out = {}
  for item in ((list or "") .. " |"):gmatch("%s*(.-)%s*|") do if item ~= "" then out[#out + 1] = item end end
  return out
end

local function steps()
  local text = assert(io.open(H.root .. "/docs/tour.md")):read("a")
  local out = {}
  local starts = {}
  for at in text:gmatch("\n()## ") do starts[#starts + 1] = at end
  starts[#starts + 1] = #text + 1
  for k = 1, #starts - 1 do
    local section = text:sub(starts[k], starts[k + 1] - 1)
    local title, cmd, expect = section:match("^## ([^\n]+).-```sh\n([^\n]+)\n```\n<!%-%- expect: (.-) %-%->")
    if title then
      out[#out + 1] = {title = title, cmd = cmd, want = items(expect), answer = items(section:match("<!%-%- answer: (.-) %-%->")),
                       text = section}
    end
  end
  return out
end

-- The SPI and upcall functions a step's prose names (WSPxxx, WPUxxx), outside
-- its command, its comments and its "On real Windows" note.
local function named_calls(section)
  local prose = section:gsub("```.-```", ""):gsub("<!%-%-.-%-%->", ""):gsub("%*On real Windows:%*.-\n\n", "\n\n")
  local out, seen = {}, {}
  for name in prose:gmatch("%f[%w](W[SP][PU]%u%w*)") do
    if name:match("%l") and not seen[name] then seen[name] = true; out[#out + 1] = name end
  end
  return out
end

-- #runner: these start bin/lwsp-run as a process of its own (natively and
-- under Wine); TSan's run leaves them out.
describe("the tour (docs/tour.md) #runner", function()
  local all = steps()

  it("has its twenty-four steps, each one command with what to look for, an exercise and its answer", function()
    assert.equal(24, #all)
    for _, s in ipairs(all) do
      assert.truthy(s.cmd:match("^bin/lwsp%-run ") or s.cmd:match("^bin/lwsp%-spec "), s.cmd)
      assert.is_true(#s.want >= 1, s.title)
      assert.truthy(s.text:find("**Exercise.**", 1, true), s.title)
      assert.is_true(#s.answer >= 1, s.title)
    end
  end)

  it("links every step that differs from Windows to Microsoft's page on learn.microsoft.com, every link defined", function()
    local text = assert(io.open(H.root .. "/docs/tour.md")):read("a")
    local refs = {}
    for key, url in text:gmatch("\n%[([%w_]+)%]: (%S+)") do refs[key] = url end
    -- every reference the tour uses is defined
    for key in text:gmatch("%]%[([%w_]+)%]") do assert.truthy(refs[key], "undefined link [" .. key .. "]") end
    -- an upcall's page is its function's (nf-ws2spi-wpu*; ws2spi.h's LPWPU* types have no page)
    for key, url in pairs(refs) do assert.falsy(url:find("nc%-ws2spi%-lpwpu"), key .. ": " .. url) end
    local notes = 0
    for _, s in ipairs(all) do
      local note = s.text:match("%*On real Windows:%*(.-)\n\n")
      if note then
        notes = notes + 1
        local ms = false
        for key in note:gmatch("%]%[([%w_]+)%]") do
          if (refs[key] or ""):match("^https://learn%.microsoft%.com/") then ms = true end
        end
        for url in note:gmatch("%]%((https://[^)]+)%)") do
          if url:match("^https://learn%.microsoft%.com/") then ms = true end
        end
        assert.is_true(ms, "no Microsoft page linked in the note of step " .. s.title)
      end
    end
    assert.is_true(notes >= 20, notes)
  end)

  for _, s in ipairs(all) do
    -- bin/lwsp-spec runs busted through a POSIX shell; a provider's
    -- configuration (--config) is POSIX-only for now
    local spec_step = s.cmd:match("^bin/lwsp%-spec ") ~= nil
    local posix = spec_step or s.cmd:find(" --config ", 1, true) ~= nil
    it("step " .. s.title .. ": " .. s.cmd .. (posix and " #posix" or ""), function()
      local output, code = H.run(s.cmd)
      assert.equal(0, code, output)
      if not spec_step then assert.truthy(output:find("passed\n", 1, true), output) end
      for _, w in ipairs(s.want) do
        -- (an event's value is lwsp's host's own small number; on Windows it is a kernel handle)
        local handle_value = w:match("^, 0x%x+$") ~= nil
        if not (H.windows and handle_value) then
          assert.truthy(output:find(w, 1, true), ("%q not in the output of %s:\n%s"):format(w, s.cmd, output))
        end
      end
      -- the exercise's answer is in the output
      for _, w in ipairs(s.answer) do
        assert.truthy(output:find(w, 1, true), ("answer %q not in the output of %s:\n%s"):format(w, s.cmd, output))
      end
      -- the prose names only calls its trace shows (a step without a trace names none)
      for _, name in ipairs(named_calls(s.text)) do
        assert.is_false(spec_step, ("step %s names %s and shows no trace"):format(s.title, name))
        assert.truthy(output:find(name, 1, true), ("step %s names %s, which its trace does not show"):format(s.title, name))
      end
    end)
  end
end)

describe("bin/lwsp-run #runner", function()
  local function run(args) return H.run("bin/lwsp-run " .. args) end

  it("runs every scenario through two layers over the native base and over memnet", function()
    local list = run("--list")
    local names = {}
    for line in list:gmatch("[^\n]+") do names[#names + 1] = line:match("^  (%S+)") end
    assert.is_true(#names >= 10, list)
    for _, n in ipairs(names) do
      if n ~= "refused" then
        -- "redirected" needs its layer (examples/redirect.lua) on top
        local top = n == "redirected" and "examples/redirect.lua " or ""
        local out, code = run(top .. "examples/passthrough.lua examples/meter.lua --quiet --run " .. n)
        assert.equal(0, code, out)
        out, code = run(top .. "examples/passthrough.lua --base examples/memnet.lua --quiet --run " .. n)
        assert.equal(0, code, out)
      end
    end
  end)

  it("prints what the README's trace excerpt shows", function()
    local readme = assert(io.open(H.root .. "/README.md")):read("a")
    local cmd, excerpt = readme:match("\n%$ (bin/lwsp%-run [^\n]-overlapped%-event)[^\n]*\n(.-)```")
    assert.truthy(cmd, "no trace excerpt in README.md")
    local out, code = run(cmd:gsub("^bin/lwsp%-run ", "") .. " --trace")
    assert.equal(0, code, out)
    local n = 0
    for line in excerpt:gmatch("[^\n]+") do
      if line ~= "..." and not line:match("^thread %d+$") then
        -- durations and the sets of the service thread's polls vary from run to run
        local pat = line:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"):gsub("%%%(%d+ us%%%)", "%%(%%d+ us%%)")
          :gsub("WSPSelect%%%(.-, 0%%%.02 s%%%)$", "WSPSelect%%([^\n]-, 0%%.02 s%%)")
        assert.truthy(out:find(pat), ("README line not in the output: %s\n%s"):format(line, out))
        n = n + 1
      end
    end
    assert.is_true(n >= 15)
  end)

  it("writes the records and the page with --trace=PREFIX, the same records both ways", function()
    local prefix = H.tmp .. "/run"
    local out, code = run("examples/passthrough.lua --run echo --quiet --trace=" .. prefix)
    assert.equal(0, code, out)
    local trace = require "wsp.trace"
    local recs = trace.read(prefix .. ".jsonl")
    assert.is_true(#recs > 20)
    local page = assert(io.open(prefix .. ".html")):read("a")
    local data = page:match('<script type="application/json" id="trace%-data">(.-)</script>')
    assert.equal(#recs, select(2, data:gsub('"seq":', "")))
    -- the text tree printed is the same records'
    local calls = 0
    for _, r in ipairs(recs) do if r.kind == "call" then calls = calls + 1 end end
    assert.equal(calls, select(2, out:gsub(" %-> [^\n]-: %w+%(", "")))
  end)

  it("fails clearly: a failing scenario, a script that is no scenario, an unknown option", function()
    local bad = H.script("return function(ctx) return nil, 'it went wrong' end")
    local out, code = run("--run " .. bad)
    assert.equal(1, code)
    assert.truthy(out:find("lwsp-run: it went wrong", 1, true), out)
    out, code = run("--run " .. H.script("return 42"))
    assert.equal(2, code)
    assert.truthy(out:find("must return a function(ctx)", 1, true), out)
    out, code = run("--frobnicate")
    assert.equal(2, code)
    assert.truthy(out:find("unknown option --frobnicate", 1, true), out)
    out, code = run("examples/firewall.lua --run echo --base " .. H.tmp .. "/nonexistent/base.lua")
    assert.equal(1, code)
    assert.truthy(out:find("WSAEPROVIDERFAILEDINIT", 1, true), out)
  end)
end)
