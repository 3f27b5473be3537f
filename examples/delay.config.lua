-- Configuration for bin/lwsp-run --config: a table per script name.
return {
  delay = {delay = 0.2},
  redirect = {map = {["127.0.0.2"] = "127.0.0.1"}},
}
