-- A cached check's one target, through the states get_stats() gives while a
-- check's result is being applied (see server_state). Each state is read by a
-- page asked 300 ms after the last (past any reuse); prints one line per state:
-- "<state>  <page status>  <seen: whether the check was published as seen>  <target ok>  <reason>".
local harness = ...
local stats
local server = { get_stats = function() return stats end }
local backend = { servers = setmetatable({}, { __index = function() return server end }) }
setmetatable(core.backends, { __index = function() return backend end })
local seen = false
core.set_map = function() seen = true end  -- luacheck: ignore 122

local STATES = {
  { "unchecked", { status = "UP", check_status = "INI" } },
  -- The check failed; the server has not lost its health yet.
  { "failure-unapplied", { status = "UP", check_status = "L4CON", last_chk = "Connection refused" } },
  -- Its health lost; not marked down yet.
  { "failure-half-applied", { status = "UP 0/1", check_status = "L4CON", last_chk = "Connection refused" } },
  { "failure-half-applied-rise-2", { status = "UP -1/1", check_status = "L4CON", last_chk = "Connection refused" } },
  -- A server down whose check has just passed.
  { "success-unapplied", { status = "DOWN", check_status = "L7OK", last_chk = "" } },
  { "down", { status = "DOWN", check_status = "L4CON", last_chk = "Connection refused" } },
  { "up", { status = "UP", check_status = "L7OK", last_chk = "" } },
}
for _, state in ipairs(STATES) do
  stats = state[2]
  harness.run_until(harness.now_ms() + 300)
  local response = harness.request("/")
  harness.run_until(harness.now_ms() + 50)
  local body = table.concat(response.body)
  print(state[1], response.status, seen, body:match('"ok":(%a+)'), body:match('"reason":%s*"([^"]*)"'))
end
