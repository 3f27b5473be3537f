-- tools/shape.lua: the functions of C source text and their lengths, for
-- spec/30-layout_spec.lua's check that no function runs over 80 lines
-- without a reason ("Over 80 lines:" in the comment above it).
--   lua5.4 tools/shape.lua src/*/*.c      lists the functions over 80 lines
local M = {}

-- {name, first line, lines, reasoned} of each function definition in C text
function M.functions(text)
  local out, lines = {}, {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local depth, sig, start, in_comment, last_comment = 0, nil, nil, false, nil
  local directive = false   -- inside a preprocessor line continued with a backslash
  for i, l in ipairs(lines) do
    local code = l
    local continued = l:match("\\%s*$") ~= nil
    if directive or (not in_comment and l:match("^%s*#")) then
      directive = continued
      code = ""
    end
    if in_comment then
      local e = code:find("*/", 1, true)
      if e then in_comment = false; code = code:sub(e + 2); last_comment = i else code = ""; last_comment = i end
    end
    code = code:gsub("/%*.-%*/", ""):gsub("//.*", "")
    local open = code:find("/*", 1, true)
    if open then in_comment = true; code = code:sub(1, open - 1); last_comment = i end
    code = code:gsub('"\\?.-[^\\]"', '""'):gsub('""', ""):gsub("'\\?.'", "''")
    if depth == 0 and code:match("^[%a_]") and code:find("(", 1, true) and not code:match(";%s*$") and not code:match("^#") then
      sig = sig or i
    elseif depth == 0 and code:match(";%s*$") then
      sig = nil
    end
    do
      for c in code:gmatch("[{}]") do
        if c == "{" then
          if depth == 0 and sig then start = sig end
          depth = depth + 1
        else
          depth = depth - 1
          if depth == 0 and start then
            local above = {}   -- the comment right above, as one line of words
            local j = start - 1
            while j >= 1 and (lines[j]:match("^%s*/?%*") or lines[j]:match("^%s*//")) do
              table.insert(above, 1, (lines[j]:gsub("^%s*/?%*+/?", ""):gsub("^%s*//", ""):gsub("%*/%s*$", "")))
              j = j - 1
            end
            local reasoned = table.concat(above, " "):gsub("%s+", " "):find("Over 80 lines:", 1, true) ~= nil
            out[#out + 1] = {lines[start]:match("([%w_]+)%s*%(") or lines[start], start, i - start + 1, reasoned}
            start, sig = nil, nil
          end
        end
      end
    end
    if depth == 0 and code:match("^}") then sig = nil end
  end
  return out
end


if arg and arg[0] and arg[0]:match("shape%.lua$") then
  for _, path in ipairs(arg) do
    local f = assert(io.open(path, "rb"))
    for _, fn in ipairs(M.functions(f:read("a"))) do
      if fn[3] > 80 then print(("%s:%d %s %d lines%s"):format(path, fn[2], fn[1], fn[3], fn[4] and " (reason given)" or "")) end
    end
    f:close()
  end
end

return M
