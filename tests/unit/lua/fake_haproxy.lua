-- A fake of the HAProxy Lua API checktcp.lua uses, with a virtual clock and a
-- cooperative scheduler, to put the service in states a real HAProxy reaches
-- only rarely (a probe that never ends). HAProxy 2.6's API: no core.queue, so
-- workers and requests poll. Run as:
--   lua fake_haproxy.lua <checks data file> <checktcp.lua> <scenario.lua>
-- The scenario is a chunk called with the harness (see `harness` below) and
-- prints what the test reads.

local START_S = 1800000000
local RESUME_COST_US = 10   -- each resume of a task takes this much virtual time

local clock_us = 0
local tasks, order = {}, 0
local logs, services = {}, {}

local function schedule(task, wake_us)
  order = order + 1
  task.wake, task.order = wake_us, order
end

local function spawn(fn, name)
  local task = { co = coroutine.create(fn), name = name }
  schedule(task, clock_us)
  tasks[#tasks + 1] = task
  return task
end

-- Runs tasks, earliest wake first (then in the order they were scheduled),
-- until none can run before until_ms.
local function run_until(until_ms)
  local until_us = until_ms * 1000
  while true do
    local next_task
    for _, task in ipairs(tasks) do
      if not task.dead and (next_task == nil or task.wake < next_task.wake
          or (task.wake == next_task.wake and task.order < next_task.order)) then
        next_task = task
      end
    end
    if next_task == nil or next_task.wake > until_us then
      clock_us = math.max(clock_us, until_us)
      return
    end
    clock_us = math.max(clock_us, next_task.wake) + RESUME_COST_US
    local ok, sleep_ms = coroutine.resume(next_task.co)
    if not ok then error(next_task.name .. ": " .. tostring(sleep_ms)) end
    if coroutine.status(next_task.co) == "dead" then
      next_task.dead = true
    else
      schedule(next_task, clock_us + math.floor((sleep_ms or 0) * 1000))
    end
  end
end

local real_time = os.time
os.time = function(...)  -- luacheck: ignore 122
  if select("#", ...) > 0 then return real_time(...) end
  return START_S + clock_us // 1000000
end

-- A socket whose connect succeeds and whose reads never end: a probe stuck
-- past any deadline.
local function hung_socket()
  return {
    settimeout = function() end,
    connect = function() return true end,
    send = function(_, data) return #data end,
    receive = function() return coroutine.yield(math.huge) end,
    close = function() end,
  }
end

core = {  -- luacheck: ignore 121
  err = 3, warning = 4, notice = 5,
  log = function(level, message) logs[#logs + 1] = { level = level, message = message } end,
  now = function() return { sec = clock_us // 1000000, usec = clock_us % 1000000 } end,
  yield = function() coroutine.yield(0) end,
  msleep = function(ms) coroutine.yield(ms) end,
  register_task = function(fn) spawn(fn, "task") end,
  register_service = function(name, _, fn) services[name] = fn end,
  backends = {},
  tcp = hung_socket,
  set_map = function() end,
}

Regex = {  -- luacheck: ignore 121
  new = function() return true, { exec = function() return false end } end,
}

-- A GET of path asking for JSON, served by the checktcp service as a task.
local function request(path)
  local response = { body = {} }
  local applet = {
    method = "GET", path = path, qs = "", headers = { accept = { [0] = "application/json" } },
    set_status = function(_, status) response.status = status end,
    add_header = function() end,
    start_response = function() end,
    send = function(_, body) response.body[#response.body + 1] = body end,
    get_var = function() return nil end,
    set_var = function() end,
    -- Sample fetches: HAProxy's date, the virtual wall clock (date(0, "ms") only).
    f = { date = function() return START_S * 1000 + clock_us // 1000 end },
  }
  spawn(function() services.checktcp(applet) end, "request " .. path)
  return response
end

local data_file, code_file, scenario_file = ...
dofile(data_file)
dofile(code_file)
local harness = { run_until = run_until, request = request, logs = logs,
                  now_ms = function() return clock_us // 1000 end }
assert(loadfile(scenario_file))(harness)
