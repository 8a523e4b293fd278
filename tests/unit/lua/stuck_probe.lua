-- Requests arriving one after another wait on a probe that never ends, then each prints one line:
-- "status <code> <reason of the first row>"; then "logged <n>": the warnings
-- about the stuck probe.
local harness = ...
local WAITING = 6
local ARRIVAL_MS = 20
harness.run_until(100)
local responses = {}
-- One request every ARRIVAL_MS: the first starts the probe, the others share it.
for i = 1, WAITING do
  responses[i] = harness.request("/")
  harness.run_until(harness.now_ms() + ARRIVAL_MS)
end
harness.run_until(harness.now_ms() + 1000)
for _, response in ipairs(responses) do
  local body = table.concat(response.body)
  print("status", response.status, body:match('"reason":%s*"([^"]*)"'))
end
local logged = 0
for _, entry in ipairs(harness.logs) do
  if entry.message:find("probe stuck", 1, true) then logged = logged + 1 end
end
print("logged", logged)
