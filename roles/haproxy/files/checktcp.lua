-- checktcp: an HAProxy Lua service answering "is this TCP service really
-- working?" with 200 OK or 503 KO, for one or many named checks
-- (docs/architecture.md). Static code: the checks come from the data file the
-- role renders and loads just before this one (the global checktcp_config).
--
-- * live mode: one worker task per target (registered at load: HAProxy 2.6
--   never frees a task registered later) runs the probes requests ask for.
-- * cached mode: HAProxy's health checks probe and haproxy.cfg answers; Lua
--   renders pages from their state and tells haproxy.cfg when it is complete.

-- luacheck: globals checktcp_config
local config = checktcp_config
checktcp_config = nil

-- Limits and slack, in bytes and milliseconds.
local MAX_LINE_BYTES = config.max_line_bytes  -- a longer line is KO (conversation.py)
local REQUEST_SLACK_MS = 50       -- a request waits for its verdict this long past the timeout
local WAIT_SPIN_MS = 2            -- a waiting request first yields without sleeping,
local WAIT_BACKOFF_MAX_MS = 16    -- then sleeps 1, 2, 4... ms, up to this
local DECIDED_GRACE_MS = 20       -- once the policy is met, the other probes have this long
local WORKER_SPIN_MS = 2          -- HAProxy 2.6: a worker yields without sleeping this long after a probe,
local WORKER_IDLE_POLL_MS = 50    -- then polls every 1, 2, 4... ms, up to this
local ERROR_PAUSE_MS = 1000       -- a task that raised an error starts again after this
local LOG_EVERY_MS = 1000         -- an unchanged KO reason is logged at most this often per target
local WATCH_MAX_MS = 250          -- a cached check's state is read at least this often
local ENGINE_REUSE_MS = config.page_reuse_ms  -- a cached check's state read, and its page, serve this long
local REFRESH_MIN_S, REFRESH_MAX_S = 2, 3600
local PRINTABLE_MAX_BYTES = 64
local CONNECT_TIMEOUT_SLACK_MS = 40  -- a connect failing this near the deadline timed out (relay: 20 ms)
local REARM_SLACK_MS = 5          -- a read may end this much past the deadline,
local MIN_SOCKET_TIMEOUT_MS = 10  -- or this much near it
local SOCKET_ATTEMPTS = 3         -- new sockets a probe takes when HAProxy ends one (see connect)

-- Queue:pop_wait (2.8+) lets workers sleep until a request comes, Queue:alarm
-- with core.wait (3.2+) lets requests sleep until a probe ends; else they poll.
local HAS_QUEUE = core.queue ~= nil
local HAS_ALARM = HAS_QUEUE and core.wait ~= nil and core.queue().alarm ~= nil
local START_LATENCY_MS = HAS_QUEUE and 0 or WORKER_IDLE_POLL_MS

-------------------------------------------------------------------- clocks

local function mono_ms()
  local t = core.now()
  return t.sec * 1000 + t.usec // 1000
end

-- Times are kept on core.now(), which does not step with the wall clock; a
-- page dates them by the wall clock's offset when it is rendered.
local function wall_offset_ms(applet)
  return applet.f:date(0, "ms") - mono_ms()
end

local function utc(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end

---------------------------------------------------------------- utilities

-- Runs step() until it returns true; an error is logged, and after a pause
-- the step starts again: one error never ends a task.
local function repeat_step(what, step, on_error)
  while true do
    local ok, done = pcall(step)
    if ok and done then return end
    if not ok then
      core.log(core.err, string.format("checktcp: %s: error: %s", what, tostring(done)))
      if on_error then on_error(tostring(done)) end
      core.msleep(ERROR_PAUSE_MS)
    end
  end
end

-- A poll where HAProxy cannot wake a task: yields for spin_ms, then sleeps
-- 1, 2, 4... ms, up to max_ms (and limit_ms).
local function poller(spin_ms, max_ms)
  local spin_until, pause = mono_ms() + spin_ms, 1
  return function(limit_ms, now)
    if (now or mono_ms()) < spin_until then
      core.yield()
    else
      core.msleep(math.min(pause, limit_ms or pause))
      pause = math.min(pause * 2, max_ms)
    end
  end
end

-- The start of a reply, safe for logs and pages: \ and " escaped, then bytes
-- outside printable ASCII as \xNN.
local function printable(s)
  return (s:sub(1, PRINTABLE_MAX_BYTES):gsub('["\\]', "\\%0"):gsub("[^ -~]", function(c)
    return string.format("\\x%02x", c:byte())
  end))
end

-------------------------------------------------------------------- probe

-- A probe connects to its target's relay in haproxy.cfg, so a failed connect
-- to the target shows as a close before any byte: the relay's count of
-- connection errors tells it from a target that accepted and closed.
local function relay_errors(relay)
  local proxy = core.backends[relay.proxy]
  local server = proxy and proxy.servers["target"]
  return server and tonumber(server:get_stats()["econ"]) or 0
end

-- A check's ops, as conversation.py compiled them (HAProxy's health checks
-- run the same as tcp-check rules), with HAProxy's regex engine.
local function compiled(regex)
  local ok, compiled_or_error = Regex.new(regex, true)
  if not ok then error("checktcp: cannot compile " .. regex .. ": " .. tostring(compiled_or_error)) end
  return compiled_or_error
end

-- A line's stage and place in reasons: the echo conversation keeps its own words.
local function load_ops(ops, echo)
  for _, op in ipairs(ops) do
    if op.op == "send" then
      op.data = op.hex:gsub("%x%x", function(pair) return string.char(tonumber(pair, 16)) end)
    else
      op.matcher = compiled(op.regex)
      for n, part in ipairs(op.parts or {}) do
        part.matcher = compiled(config.line_regex_flags .. part.regex)
        part.where = echo and "" or string.format(" at step %d %s", part.step, part.words)
        part.stage = echo and (n < op.count and "header line " .. n or "reply line")
          or string.format("line %d of %d%s", n, op.count, part.where)
      end
    end
  end
  return ops
end

-- One probe of st's target within one deadline: { ok, reason, ms, finished };
-- st.stage says where it is.
-- It reads byte by byte, with the time left as socket timeout: on HAProxy 3.x
-- that timeout only bounds inactivity, and a peer could trickle bytes.
local function probe(st)
  local check, target, started, sock, received = st.check, st.target, mono_ms(), nil, 0
  local deadline, errors_before = started + check.timeout_ms, relay_errors(target.relay)

  local function timeout(stage)
    return string.format("timeout after %d ms waiting for %s", check.timeout_ms, stage)
  end

  -- Keeps the socket timeout within REARM_SLACK_MS of the time left (nil
  -- once none is): set as it shrinks, not for every byte.
  local armed_ms = nil
  local function arm()
    local left = deadline - mono_ms()
    if left <= 0 then return nil end
    if armed_ms == nil or armed_ms > left + REARM_SLACK_MS then
      -- Never a few ticks: HAProxy 3.0 may find it expired first (BUG_ON in sc_notify).
      armed_ms = math.max(left, MIN_SOCKET_TIMEOUT_MS)
      sock:settimeout(armed_ms / 1000)
    end
    return left
  end

  -- HAProxy 2.6 ends a socket's stream if Lua is paused before connect()
  -- (tune.lua.forced-yield): settimeout or connect fails; take a new socket.
  local function connect()
    st.stage = "connect"
    local failed = "probe error: HAProxy ended each new socket before it connected"
    for _ = 1, SOCKET_ATTEMPTS do
      sock, armed_ms = core.tcp(), nil
      local alive, left = pcall(arm)
      if alive then
        if not left then return nil, timeout("connect") end
        if sock:connect(target.relay.socket) then return true end
        failed = "relay unavailable: " .. target.relay.socket
      end
      sock:close()
    end
    return nil, failed
  end

  -- Why the connection closed before any byte, if the relay's connect failed.
  local function connect_failure()
    if received > 0 or relay_errors(target.relay) == errors_before then return nil end
    if mono_ms() >= deadline - CONNECT_TIMEOUT_SLACK_MS then return timeout("connect") end
    return check.tls and "connection refused, unreachable, or TLS handshake failed (certificate or name)"
      or "connection refused or unreachable"
  end

  -- One byte, or nil and the reason (stage: what was awaited).
  local function read_byte(stage)
    if not arm() then return nil, timeout(stage) end
    local byte = sock:receive(1)
    if byte ~= nil then received = received + 1; return byte end
    return nil, connect_failure() or mono_ms() >= deadline - 1 and timeout(stage) or stage .. " closed by peer"
  end

  local function send(op)
    st.stage = "send"
    if not arm() then return nil, timeout("send") end
    if sock:send(op.data) then return true end
    return nil, mono_ms() >= deadline - 1 and timeout("send") or "send failed: connection closed"
  end

  -- count bytes, or else a line: at most MAX_LINE_BYTES before its LF.
  local function read(stage, count)
    st.stage = stage
    local bytes = {}
    repeat  -- (until sees the body's locals)
      local byte, err = read_byte(stage)
      if byte == nil then return nil, err end
      bytes[#bytes + 1] = byte
      if not count and byte ~= "\n" and #bytes > MAX_LINE_BYTES then
        return nil, string.format("%s longer than %d bytes", stage, MAX_LINE_BYTES)
      end
    until #bytes == count or not count and byte == "\n"
    return table.concat(bytes)
  end

  -- The op's lines, then its regex over them; a failing line is named by its step.
  local function read_lines(op)
    local lines = {}
    for n, part in ipairs(op.parts) do
      local line, err = read(part.stage)
      if line == nil then return nil, err end
      lines[n] = line
    end
    if op.matcher:exec(table.concat(lines)) then return true end
    for n, part in ipairs(op.parts) do
      if not part.matcher:exec(lines[n]) then
        return nil, string.format("unexpected reply \"%s\"%s", printable((lines[n]:gsub("\r?\n$", ""))), part.where)
      end
    end
    return nil, "unexpected reply at " .. op.what
  end

  local function read_bytes(op)
    local got, err = read(string.format("%d bytes at %s", op.count, op.what), op.count)
    if got == nil then return nil, err end
    local dump = got:gsub(".", function(c) return string.format("%02X", c:byte()) end)
    if op.matcher:exec(dump) then return true end
    return nil, string.format("unexpected reply \"%s\" at %s", dump:lower(), op.what)
  end

  local RUN = { send = send, lines = read_lines, bytes = read_bytes }

  local function run()
    local ok, err = connect()
    if not ok then return false, err end
    for _, op in ipairs(check.ops) do
      ok, err = RUN[op.op](op)
      if not ok then return false, err end
    end
    return true, "reply matched"
  end

  local ran, verdict, reason = pcall(run)
  -- HAProxy 3.x keeps a closed socket's stream until its timeout: make it short.
  if sock then pcall(sock.settimeout, sock, MIN_SOCKET_TIMEOUT_MS / 1000); sock:close() end
  if not ran then verdict, reason = false, "probe error at " .. (st.stage or "start") .. ": " .. tostring(verdict) end
  local finished = mono_ms()
  return { ok = verdict, reason = reason, ms = finished - started, finished = finished }
end

------------------------------------------------------------------ targets

local function log_failure(st, reason, ms, at)
  if reason ~= st.logged_reason or at - st.logged_at >= LOG_EVERY_MS then
    core.log(core.warning, string.format("checktcp: %s KO: %s (%d ms)", st.label, reason, ms))
    st.logged_reason, st.logged_at = reason, at
  end
end

local function record(st, result)
  st.result, st.probes = result, st.probes + 1
  if not result.ok then
    st.failures = st.failures + 1
    return log_failure(st, result.reason, result.ms, result.finished)
  end
  if st.logged_reason ~= nil then
    core.log(core.notice, string.format("checktcp: %s OK again (%d ms)", st.label, result.ms))
  end
  st.logged_reason = nil
end

-- Blocks the worker until a request wants a probe it has not started. On
-- HAProxy 2.6, which cannot wake a task, it polls: not at once after a probe
-- (the next request is often there), then every WORKER_IDLE_POLL_MS at most.
local function wait_for_demand(st)
  local pause = st.demand and function() st.demand:pop_wait() end or poller(WORKER_SPIN_MS, WORKER_IDLE_POLL_MS)
  while st.wanted <= st.seq do pause() end
  while st.demand and st.demand:pop() do end
end

local function finish_probe(st, result)
  result.seq = st.seq
  record(st, result)
  st.check.round = st.check.round + 1
  st.probing_since, st.stage = nil, nil
  -- Wakes the requests waiting (3.2+): a push wakes every alarm.
  local done = st.check.done
  if done then done:push(true); done:pop() end
end

local function worker_step(st)
  wait_for_demand(st)
  st.seq, st.probing_since = st.seq + 1, mono_ms()
  finish_probe(st, probe(st))
end

-- The number of the probe of st's target a request arriving at now awaits:
-- the one in flight, or one that ended under spacing_ms ago, else a new one.
local function demand_probe(st, now, spacing_ms)
  if st.probing_since ~= nil then return st.seq end
  local last = st.result
  if spacing_ms and last ~= nil and now - last.finished < spacing_ms then return last.seq end
  local seq = st.seq + 1
  if st.wanted < seq then
    st.wanted = seq
    if st.demand then st.demand:push(true) end
  end
  return seq
end

------------------------------------------------------------------- checks

local checks, by_path = {}, {}

local function new_target(check, check_index, target, index)
  target.address = string.format(target.host:find(":", 1, true) and "[%s]:%d" or "%s:%d", target.host, target.port)
  target.relay = {
    proxy = string.format("%s_%s_%d", config.relay_proxy, check.name, index),
    -- A Unix socket in HAProxy's chroot, where the workers connect from.
    socket = string.format("unix@/%s-%d-%d.sock", config.relay_socket, check_index, index),
  }
  return {
    check = check, target = target, label = config.catch_all and target.name or (check.name .. "/" .. target.name),
    seq = 0, wanted = 0, result = nil, probing_since = nil, stage = nil,
    demand = HAS_QUEUE and core.queue() or nil,
    logged_reason = nil, logged_at = 0, probes = 0, failures = 0,
  }
end

for c, check in ipairs(config.checks) do
  check.index = c
  check.echo = check.preset == "echo" and check.steps == nil
  check.ops = load_ops(check.ops, check.echo)
  check.answered = { OK = 0, KO = 0 }
  check.round = 0   -- probes finished (see verdict)
  check.done = HAS_ALARM and core.queue() or nil  -- its requests wait on this (finish_probe)
  check.engine_backend = config.engine_backend .. "_" .. check.name  -- cached checks (haproxy.cfg)
  check.answer_backend = config.answer_backend .. "_" .. check.name
  check.states, check.pages, check.rendering = {}, {}, {}  -- check_page's, by form
  for i, target in ipairs(check.targets) do check.states[i] = new_target(check, c, target, i) end
  checks[#checks + 1] = check
  by_path[check.path] = check
end

-- Whether the probes wanted are all done, or (unless all) enough are OK for
-- the policy: a failing policy waits for every probe, so its page shows them.
local function decided(check, wanted, all)
  local up, pending = 0, 0
  for i, st in ipairs(check.states) do
    local r = st.result
    if r == nil or r.seq < wanted[i] then
      pending = pending + 1
    elseif r.ok then
      up = up + 1
    end
  end
  return pending == 0 or (not all and up >= check.required)
end

-- Waits until decided or the deadline: woken by a worker (3.2+), else polling.
local function await(check, wanted, deadline, all)
  local pause = poller(WAIT_SPIN_MS, WAIT_BACKOFF_MAX_MS)
  while not decided(check, wanted, true) do
    local now = mono_ms()
    if not all and decided(check, wanted, false) then
      -- The policy is met: a short grace for the others, so a hung one delays nobody.
      deadline, all = math.min(deadline, now + DECIDED_GRACE_MS), true
    end
    if now >= deadline then break end
    if check.done then
      -- A probe may end between the look above and the alarm: look again.
      check.done:alarm()
      if not decided(check, wanted, true) then core.wait(deadline - now) end
    else
      pause(deadline - now, now)
    end
  end
end

-- Whether every row of verdict v comes from a probe at least as new as wanted.
local function covers(v, wanted)
  for i, row in ipairs(v.rows) do
    if row.seq == nil or row.seq < wanted[i] then return false end
  end
  return true
end

-- The verdict of check from the probes wanted: { ok, up, rows, at (its
-- oldest probe), checked (its newest), done }. Until another probe of the
-- check ends (check.round), a done verdict is shared, so its page is rendered
-- once. A probe may end while HAProxy pauses the Lua: the round is read
-- first, and a shared verdict must hold the probes wanted or newer ones.
local function verdict(check, wanted, now)
  local round = check.round
  local done, shared = decided(check, wanted, true), check.shared
  if done and shared ~= nil and check.shared_round == round and covers(shared, wanted) then return shared end
  local rows, up, oldest, newest = {}, 0, now, nil
  for i, st in ipairs(check.states) do
    local r = st.result
    local row = { name = st.target.name, ok = false, ms = 0, checked = nil }
    if r ~= nil and r.seq >= wanted[i] then
      row.ok, row.reason, row.ms, row.checked, row.seq = r.ok, r.reason, r.ms, r.finished, r.seq
      oldest, newest = math.min(oldest, r.finished), math.max(newest or r.finished, r.finished)
    elseif st.probing_since ~= nil and (decided(check, wanted, false)) then
      row.pending, row.reason = true, "probe still running (policy already decided)"
    elseif st.probing_since ~= nil then
      -- Logged without the elapsed time, so that waiting requests log it once.
      local stuck = string.format("no verdict within %d ms: probe stuck in %s",
        check.timeout_ms + REQUEST_SLACK_MS, st.stage or "start")
      log_failure(st, stuck, now - st.probing_since, now)
      row.reason = string.format("%s for %d ms", stuck, now - st.probing_since)
    else
      row.reason = string.format("no verdict within %d ms: probe not started", check.timeout_ms + REQUEST_SLACK_MS)
      log_failure(st, row.reason, 0, now)
    end
    if row.ok then up = up + 1 end
    rows[i] = row
  end
  local v = { ok = up >= check.required, up = up, rows = rows, at = oldest, checked = newest or now, done = done }
  if done then check.shared, check.shared_round = v, round end
  return v
end

-- The probes a live check's request arriving at arrival waits for (demand_probe).
local function demand(check, arrival)
  local wanted = {}
  for i, st in ipairs(check.states) do wanted[i] = demand_probe(st, arrival, check.min_probe_interval_ms) end
  return wanted
end

-- The live verdict on those probes, once decided or at the request's deadline.
local function settle(check, wanted, arrival)
  await(check, wanted, arrival + START_LATENCY_MS + check.timeout_ms + REQUEST_SLACK_MS, false)
  return verdict(check, wanted, mono_ms())
end

-- Whether a read or a render is under way: its token is set when it starts,
-- cleared when it ends, and waited for while under ENGINE_REUSE_MS old (an
-- older one's request may have ended while HAProxy paused it).
local function busy(token)
  return token ~= nil and mono_ms() - token.at < ENGINE_REUSE_MS
end

-- A cached check's server from its get_stats(): its last check's status
-- (INI: none yet), whether it is up, unsettled, and whether the check passed.
-- HAProxy writes a check's status, then the server's health, then its state,
-- and get_stats() takes no lock: a read in between sees a failed check on a
-- server "UP" or "UP 0/N" ("UP -1/N" with rise 2), or a passed one on a
-- server "DOWN". Such a server is unsettled: not up, and not seen yet.
local function server_state(stats)
  local status = tostring(stats.check_status or ""):gsub("^%* ", "")
  local health, passed = tostring(stats.status), status:find("OKC?$") ~= nil
  local unsettled = (tonumber(health:match("^UP (%-?%d+)/")) or 1) <= 0
    or health == "UP" and not passed and status ~= "INI" or health == "DOWN" and passed
  return status, health:find("^UP") ~= nil and not unsettled, unsettled, passed
end

-- A cached check's verdict from its servers' state, as verdict() builds it,
-- plus seen (every target checked, and settled). Once seen, a read serves
-- for ENGINE_REUSE_MS, so the cost of reads and pages never follows the
-- request rate; a request arriving during a read waits for it.
local function engine_verdict(check)
  local arrival = mono_ms()
  while busy(check.reading) do core.yield() end
  local last, now = check.engine_read, mono_ms()
  if last ~= nil and (last.at >= arrival or last.seen and now - last.at < ENGINE_REUSE_MS) then
    return last
  end
  local token = { at = now }
  check.reading = token
  local servers = core.backends[check.engine_backend].servers
  local rows, up, seen = {}, 0, true
  for i, st in ipairs(check.states) do
    local stats = servers[st.target.server]:get_stats()
    local status, up_now, unsettled, passed = server_state(stats)
    local row = { name = st.target.name, ms = tonumber(stats.check_duration) or 0, checked = now, ok = up_now,
                  changed_s = tonumber(stats.lastchg) }
    if unsettled then seen = false end
    if status == "" or status == "INI" then
      seen, row = false, { name = st.target.name, ms = 0, ok = false, pending = true, reason = "not checked yet" }
    elseif row.ok and passed then
      row.reason = "reply matched"
    else
      -- HAProxy blanks last_chk while a check runs: the last one said, else its status's description.
      local detail = tostring(stats.last_chk or "")
      if detail ~= "" then st.engine_status, st.engine_detail = status, detail
      elseif st.engine_status == status then detail = st.engine_detail
      else detail = tostring(stats.check_desc or "") end
      row.reason = detail ~= "" and (status .. ": " .. detail) or status
    end
    if row.ok then up = up + 1 end
    rows[i] = row
  end
  check.engine_read = { ok = seen and up >= check.required, up = up, rows = rows, at = now, checked = now,
                        done = true, seen = seen }
  if check.reading == token then check.reading = nil end
  return check.engine_read
end

local function check_verdict(check, arrival)
  if check.mode == "cached" then return engine_verdict(check) end
  return settle(check, demand(check, arrival), arrival)
end

------------------------------------------------------------------- pages

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function json_string(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

-- checktcp.css, via the data file. No line break: haproxy.cfg answers with a
-- published page (publish) in a log-format string, which would encode it as %0A.
local STYLE = config.style:gsub("/%*.-%*/", ""):gsub("%s*\n%s*", "")

local function page(word, title, refresh, content)
  return table.concat({
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    refresh and string.format('<meta http-equiv="refresh" content="%d">', refresh) or "",
    "<title>", word, " - ", html_escape(title), "</title><style>", STYLE, "</style></head>",
    '<body class="', word:lower(), '"><main>', content, "</main></body></html>",
  })
end

-- Counts only, without details: a hidden page never lists or names targets.
local function summary(check, v, details)
  local mode = check.mode == "cached"
    and string.format("cached mode: HAProxy checks every %g s", check.interval_ms / 1000) or "live mode"
  return string.format(details and "%d of %d targets OK, %d required (%s)" or "%d of %d up, %d required (%s)",
    v.up, #v.rows, check.required, mode)
end

-- The page's header: a failing policy with some targets up says so.
local function headline(check, v)
  local service = check.echo and "The echo service" or "The service"
  if v.ok then return service .. " answers." end
  if v.up > 0 then
    return string.format("Only %d of %d targets answer; %d required.", v.up, #v.rows, check.required)
  end
  return service .. " does not answer."
end

-- A time of day, and how long ago it was, for a page read by people. A cached
-- target's is its last change, which HAProxy counts in whole seconds before the read.
local function stamp(row, now, offset)
  local s = row.changed_s
  return s and string.format("%sZ (%d s ago)", utc(row.checked - s * 1000 + offset):sub(12, 19), s)
    or string.format("%s (%.1f s ago)", utc(row.checked + offset):sub(12), math.max(now - row.checked, 0) / 1000)
end

-- offset: the wall clock's, from the monotonic times of v (wall_offset_ms).
local function render_check_html(check, v, details, refresh, offset)
  local word = v.ok and "OK" or "KO"
  local title = config.catch_all and "checktcp" or check.name
  local now, checked = mono_ms(), utc(v.checked + offset)
  -- A cached check's page is dated by its read of HAProxy's state, its targets by their last change.
  local when, column = "checked", "checked"
  if check.mode == "cached" then when, column = "state read", "last change" end
  local out = {
    "<header><h1>", word, "</h1><p>", headline(check, v), "</p></header>",
    '<p class="meta">', html_escape(title), ": ", summary(check, v, details),
    ", ", when, " <time>", checked, "</time></p>",
  }
  if details then
    out[#out + 1] = '<div class="scroll"><table><tr><th>target</th><th>address</th><th>verdict</th>'
      .. "<th>probe ms</th><th>" .. column .. " (UTC)</th><th>reason</th></tr>"
    for i, row in ipairs(v.rows) do
      local text = row.pending and "pending" or row.ok and "OK" or "KO"
      out[#out + 1] = string.format(
        '<tr><td>%s</td><td>%s</td><td class="%s">%s</td><td class="n">%d</td><td>%s</td><td>%s</td></tr>',
        html_escape(row.name), html_escape(check.targets[i].address), "v-" .. text:lower(), text, row.ms,
        row.checked and stamp(row, now, offset) or "-", html_escape(row.reason))
    end
    out[#out + 1] = "</table></div>"
  end
  return page(word, title, refresh, table.concat(out))
end

local function render_check_json(check, v, details, offset)
  local word = v.ok and "OK" or "KO"
  local out = { '{"status":"', word, '"' }
  if not config.catch_all then
    out[#out + 1] = ',"check":' .. json_string(check.name) .. ',"path":' .. json_string(check.path)
  end
  out[#out + 1] = string.format(',"up":%d,"required":%d,"mode":"%s"', v.up, check.required, check.mode)
  if details then
    local items = {}
    for i, row in ipairs(v.rows) do
      local at = row.checked and json_string(utc(row.checked + offset)) or "null"
      items[i] = string.format('{"target":%s,"address":%s,"ok":%s,%s"probe_ms":%d,"checked_at":%s,%s"reason":%s}',
        json_string(row.name), json_string(check.targets[i].address), tostring(row.ok),
        row.pending and '"pending":true,' or "", row.ms, at,
        row.changed_s and '"last_change_s":' .. row.changed_s .. "," or "", json_string(row.reason))
    end
    out[#out + 1] = ',"checked_at":' .. json_string(utc(v.checked + offset))
    out[#out + 1] = ',"targets":[' .. table.concat(items, ",") .. "]"
  end
  out[#out + 1] = "}"
  return table.concat(out)
end

local function render_overview_html(verdicts, ok, refresh, offset)
  local word = ok and "OK" or "KO"
  local out = {
    "<header><h1>", word, "</h1><p>",
    ok and "Every check answers." or "At least one check does not answer.",
    "</p></header>",
    '<div class="scroll"><table><tr><th>check</th><th>verdict</th><th>targets OK</th><th>checked (UTC)</th></tr>',
  }
  for _, item in ipairs(verdicts) do
    local check, v = item.check, item.verdict
    out[#out + 1] = string.format(
      '<tr><td><a href="%s">%s</a></td><td class="%s">%s</td>'
        .. '<td class="n">%d of %d, %d required</td><td>%s</td></tr>',
      html_escape(check.path), html_escape(check.name), v.ok and "v-ok" or "v-ko", v.ok and "OK" or "KO",
      v.up, #v.rows, check.required, utc(v.checked + offset):sub(12))
  end
  out[#out + 1] = "</table></div>"
  return page(word, "checktcp overview", refresh, table.concat(out))
end

local function render_overview_json(verdicts, ok)
  local items = {}
  for i, item in ipairs(verdicts) do
    local check, v = item.check, item.verdict
    items[i] = string.format('{"name":%s,"path":%s,"status":"%s","up":%d,"required":%d,"mode":"%s"}',
      json_string(check.name), json_string(check.path), v.ok and "OK" or "KO", v.up, check.required, check.mode)
  end
  return string.format('{"status":"%s","checks":[%s]}', ok and "OK" or "KO", table.concat(items, ","))
end

------------------------------------------------------------- cached mode

-- Reads a cached check's state until every target has been checked, then
-- tells haproxy.cfg (map key "<name>"), which answers from then on.
local function watch(check)
  while not engine_verdict(check).seen do
    core.msleep(math.min(check.interval_ms, WATCH_MAX_MS))
  end
  core.set_map(config.state_map, check.name, "1")
  return true
end

-------------------------------------------------------------------- tasks

for _, check in ipairs(checks) do
  -- HAProxy's health checks probe a cached check's targets.
  for _, st in ipairs(check.mode == "live" and check.states or {}) do
    core.register_task(function()
      repeat_step("probe worker of " .. st.label, function() worker_step(st) end, function(err)
        if st.probing_since ~= nil then
          finish_probe(st, { ok = false, reason = "probe error: " .. err, ms = mono_ms() - st.probing_since,
                             finished = mono_ms() })
        end
      end)
    end)
  end
  if check.mode == "cached" then
    core.register_task(function() repeat_step("state of " .. check.name, function() return watch(check) end) end)
  end
end

----------------------------------------------------------------- services

local function respond(applet, status, reason, ctype, body, headers)
  applet:set_status(status, reason)
  applet:add_header("content-type", ctype)
  applet:add_header("content-length", tostring(#body))
  applet:add_header("cache-control", "no-store")
  for name, value in pairs(headers or {}) do applet:add_header(name, value) end
  applet:start_response()
  if applet.method ~= "HEAD" then applet:send(body) end
end

-- Whether the client asks for a form, as haproxy.cfg tells: query in the
-- query string, or any Accept header naming media_type.
local function wants(applet, query, media_type)
  if applet.qs and applet.qs:find(query, 1, true) then return true end
  for _, value in pairs(applet.headers["accept"] or {}) do
    if value:find(media_type, 1, true) then return true end
  end
  return false
end

-- ?refresh=N, bounded; nil when absent or not a number.
local function refresh_seconds(applet)
  local value = applet.qs and tonumber(applet.qs:match("refresh=(%d+)"))
  return value and math.max(REFRESH_MIN_S, math.min(REFRESH_MAX_S, value))
end

-- Details: where the check shows them, unless haproxy.cfg set
-- txn.checktcp_details to 0 (outside haproxy_status_details_allow).
local function shows_details(applet, check)
  local allowed = applet:get_var("txn.checktcp_details")
  return check.details and (allowed == nil or tonumber(allowed) == 1)
end

-- A cached check's page, once seen, is what haproxy.cfg answers its form with
-- while the state is under ENGINE_REUSE_MS old. The page goes under its word (_ok,
-- _ko), then the word, then the time: read in reverse, the page sent has the
-- status's word. Not a page over one buffer or with a control character (log-format encodes it).
local function publish(applet, check, v, json, details, body, offset)
  if check.mode ~= "cached" or not v.seen or #body > config.page_max_bytes or body:find("[\0-\8\10-\31\127]") then
    return
  end
  local name = string.format("proc.%s_%d_%s%d", config.page_var, check.index, json and "json" or "html",
    details and 1 or 0)
  local word = v.ok and "ok" or "ko"
  applet:set_var(name .. "_" .. word, body)
  applet:set_var(name .. "_word", word)
  applet:set_var(name .. "_at", v.at + offset)
end

-- The page of a verdict in a form, and the verdict it shows: rendered once
-- for the requests sharing it. A request for a cached check's form arriving
-- during its render waits, and takes it if it shows that read or a newer one.
local function check_page(applet, check, v, json, details, refresh)
  local form = (json and "json" or "html") .. (details and 1 or 0) .. (refresh and "r" or "")
  local cached = check.mode == "cached"
  while cached and busy(check.rendering[form]) do core.yield() end
  local last = check.pages[form]
  if last and last.refresh == refresh and v.done and (last.verdict == v or cached and last.verdict.at > v.at) then
    return last.body, last.verdict
  end
  local token = { at = mono_ms() }
  check.rendering[form] = token
  local offset = wall_offset_ms(applet)
  local body = json and render_check_json(check, v, details, offset)
    or render_check_html(check, v, details, refresh, offset)
  if check.rendering[form] == token then check.rendering[form] = nil end
  check.pages[form] = { verdict = v, refresh = refresh, body = body }
  if not refresh then publish(applet, check, v, json, details, body, offset) end
  return body, v
end

-- A page (HTML, JSON) or the terse text, with its verdict's status.
local function serve_check(applet, check, arrival)
  local v, body = check_verdict(check, arrival), nil
  local json = wants(applet, "format=json", "application/json")
  local ctype = json and "application/json" or "text/html; charset=utf-8"
  if json or not wants(applet, "format=text", "text/plain") then
    local refresh = not json and refresh_seconds(applet) or nil
    body, v = check_page(applet, check, v, json, shows_details(applet, check), refresh)
  end
  local word = v.ok and "OK" or "KO"
  -- haproxy.cfg counts a cached check's answers; only a live verdict's age is known.
  local headers = nil
  if check.mode == "live" then
    check.answered[word] = check.answered[word] + 1
    headers = { ["x-checktcp-age-ms"] = tostring(math.max(mono_ms() - v.at, 0)) }
  end
  respond(applet, v.ok and 200 or 503, word, body and ctype or "text/plain", body or (word .. "\n"), headers)
end

local function serve_overview(applet, arrival)
  -- Live checks probe concurrently: ask every worker first, then wait.
  local wanted = {}
  for _, check in ipairs(checks) do
    if check.mode == "live" then wanted[check] = demand(check, arrival) end
  end
  local verdicts, ok = {}, true
  for i, check in ipairs(checks) do
    local v = wanted[check] and settle(check, wanted[check], arrival) or engine_verdict(check)
    verdicts[i] = { check = check, verdict = v }
    ok = ok and v.ok
  end
  local json = wants(applet, "format=json", "application/json")
  respond(applet, ok and 200 or 503, ok and "OK" or "KO", json and "application/json" or "text/html; charset=utf-8",
    json and render_overview_json(verdicts, ok)
      or render_overview_html(verdicts, ok, refresh_seconds(applet), wall_offset_ms(applet)))
end

core.register_service("checktcp", "http", function(applet)
  if applet.method ~= "GET" and applet.method ~= "HEAD" then
    respond(applet, 405, "Method Not Allowed", "text/plain", "method not allowed\n", { allow = "GET, HEAD" })
    return
  end
  local arrival = mono_ms()
  if config.catch_all then
    serve_check(applet, checks[1], arrival)
  elseif by_path[applet.path] then
    serve_check(applet, by_path[applet.path], arrival)
  elseif applet.path == config.overview_path then
    serve_overview(applet, arrival)
  else
    respond(applet, 404, "Not Found", "text/plain", "no check at this path\n")
  end
end)

------------------------------------------------------------------ metrics

local function label(s)
  return (tostring(s):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- A target's samples, by metric: from its probes (live) or health check (cached).
local function samples(st, now)
  local r = st.result
  if st.check.mode == "live" then
    return { checktcp_up = (r and r.ok) and 1 or 0, checktcp_probes_total = st.probes,
             checktcp_probe_failures_total = st.failures, checktcp_probe_duration_seconds = r and r.ms / 1000 or 0,
             checktcp_verdict_age_seconds = r and (now - r.finished) / 1000 or 0 }
  end
  local stats = core.backends[st.check.engine_backend].servers[st.target.server]:get_stats()
  local _, up = server_state(stats)
  return { checktcp_up = up and 1 or 0,
           checktcp_probe_failures_total = tonumber(stats.chkfail) or 0,
           checktcp_probe_duration_seconds = (tonumber(stats.check_duration) or 0) / 1000 }
end

local TARGET_METRICS = {  -- name, type, help
  { "checktcp_up", "gauge", "1 if the target's last probe succeeded, else 0." },
  { "checktcp_probes_total", "counter", "Probes of the target (live mode)." },
  { "checktcp_probe_failures_total", "counter", "Failed probes (cached mode: failed health checks) of the target." },
  { "checktcp_probe_duration_seconds", "gauge", "Duration of the target's last probe." },
  { "checktcp_verdict_age_seconds", "gauge", "Age of the target's last verdict (live mode)." },
}

-- A cached check's answers are its backend's (2xx: OK, 5xx: KO) in haproxy.cfg.
local function answers(check, word)
  if check.mode == "live" then return check.answered[word] end
  return tonumber(core.backends[check.answer_backend]:get_stats()[word == "OK" and "hrsp_2xx" or "hrsp_5xx"]) or 0
end

core.register_service("checktcp_metrics", "http", function(applet)
  local now, out, by_target = mono_ms(), {}, {}
  for _, check in ipairs(checks) do
    for _, st in ipairs(check.states) do by_target[st] = samples(st, now) end
  end
  for _, metric in ipairs(TARGET_METRICS) do
    local name, kind, help = table.unpack(metric)
    out[#out + 1] = string.format("# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
    for _, check in ipairs(checks) do
      for _, st in ipairs(check.states) do
        local sample = by_target[st][name]
        if sample ~= nil then
          out[#out + 1] = string.format('%s{check="%s",target="%s"} %s\n',
            name, label(check.name), label(st.target.name), sample)
        end
      end
    end
  end
  out[#out + 1] = "# HELP checktcp_requests_total Status requests answered, by check and verdict.\n"
    .. "# TYPE checktcp_requests_total counter\n"
  for _, check in ipairs(checks) do
    for _, word in ipairs({ "OK", "KO" }) do
      out[#out + 1] = string.format('checktcp_requests_total{check="%s",verdict="%s"} %d\n',
        label(check.name), word, answers(check, word))
    end
  end
  respond(applet, 200, "OK", "text/plain; version=0.0.4", table.concat(out))
end)
