-- luacheck configuration (make lint): Lua 5.4 everywhere, busted in spec/.
std = "lua54"
max_line_length = 150
-- handlers have the SPI's signatures: an argument a handler does not use is fine
unused_args = false
exclude_files = {"build/", "lua_modules/", "fuzz/corpus/"}
-- specs: busted's globals; fixtures unpack more than each case uses, and
-- locals named after what they hold are reused in nested cases
files["spec/"] = {std = "+busted", ignore = {"211", "311", "421", "431", "631"}}
-- catalog.lua: a bookkeeping table kept for symmetry and a branch left for its comment
-- (the installer's and the model's messages name paths and ids: longer lines)
files["lua/wsp/catalog.lua"] = {ignore = {"241", "542"}, max_line_length = 180}
files["lua/wsp/catalog_model.lua"] = {max_line_length = 180}
