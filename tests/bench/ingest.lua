-- wrk script for the ingest benchmark: POST /events with EventBridge envelopes from a mix file
-- (one JSON body a line, written by bench.py), cycled in order by every thread.
--
--   wrk ... -s ingest.lua URL -- MIX_FILE RUN_TAG [RATE]
--
-- MIX_FILE  bodies; a line holding @SEQ@ is a make-public template whose eventID and imageId get
--           a fresh 12-character sequence on each use, so every such request is a new alert
-- RUN_TAG   4 hex digits, unique per wrk run, leading that sequence (runs share one service)
-- RATE      optional: requests per second each wrk thread offers (paced); absent, as fast as
--           possible (no delay() at all then, so unpaced runs pay for no timers)
--
-- done() prints "bench: sent_templates=N late_slots=N" for bench.py to read.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *ts);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local threads = {}
local thread_count = 0

function setup(thread)
    thread_count = thread_count + 1
    thread:set("thread_index", thread_count)
    table.insert(threads, thread)
end

local requests = {}   -- prebuilt request strings; a template slot holds false
local templates = {}  -- index -> body with @SEQ@
local cursor = 0
local run_tag = "0000"
local sequence = 0
sent_templates = 0    -- global: read by done() through thread:get

local period_ms = nil -- pacing: one request every period_ms for the whole thread
local next_due = nil
late_slots = 0

local HEADERS = { ["Content-Type"] = "application/json" }

function init(args)
    local path = args[1]
    run_tag = args[2] or run_tag
    local rate = tonumber(args[3] or "")
    local file = assert(io.open(path, "r"))
    for line in file:lines() do
        if #line > 0 then
            if line:find("@SEQ@", 1, true) then
                table.insert(requests, false)
                templates[#requests] = line
            else
                table.insert(requests, wrk.format("POST", "/events", HEADERS, line))
            end
        end
    end
    file:close()
    assert(#requests > 0, "empty mix file " .. path)
    -- With several threads, each starts at another point of the cycle (a prime stride apart),
    -- so they do not send the same bodies in step.
    cursor = ((thread_index or 1) - 1) * 997 % #requests
    if rate and rate > 0 then
        period_ms = 1000 / rate
        -- wrk looks for delay() after init(), so defining it here turns pacing on.
        delay = paced_delay
    end
end

local function fill_template(body)
    sequence = sequence + 1
    sent_templates = sent_templates + 1
    local seq = string.format("%s%08d", run_tag, sequence)
    return wrk.format("POST", "/events", HEADERS, (body:gsub("@SEQ@", seq)))
end

function request()
    cursor = cursor % #requests + 1
    local req = requests[cursor]
    if req then
        return req
    end
    return fill_template(templates[cursor])
end

-- Pacing on a schedule rather than a fixed pause: each request takes the next slot of an even
-- schedule (period_ms apart), so response time and wrk's whole-millisecond timers do not add up
-- to drift. A slot already past is sent at once and counted as late.
function paced_delay()
    local now = now_ms()
    if not next_due then
        next_due = now
    end
    local due = next_due
    next_due = next_due + period_ms
    local wait = due - now
    if wait < -1 then
        late_slots = late_slots + 1
    end
    if wait <= 0 then
        return 0
    end
    return math.floor(wait + 0.5)
end

function done()
    local sent, late = 0, 0
    for _, thread in ipairs(threads) do
        sent = sent + (thread:get("sent_templates") or 0)
        late = late + (thread:get("late_slots") or 0)
    end
    io.write(string.format("bench: sent_templates=%d late_slots=%d\n", sent, late))
end
