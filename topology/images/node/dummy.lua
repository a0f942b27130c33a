-- Dummy server for lbbench: an HAProxy Lua HTTP service, so the servers run on
-- the same event loop as HAProxy and are never the bottleneck of a lab run.
--
-- Per-request controls (query string):
--   size=N       response body of N bytes (default 0)
--   delay_ms=N   answer N milliseconds after the request arrived (default 0; within
--                a fraction of a millisecond on an idle machine, see wait_until)
--   status=N     HTTP status code (default 200)
--   echo=1       body is a JSON document with what the server saw
-- A request body (POST with Content-Length) is read and dropped.
-- The client's real address arrives in X-Forwarded-For (added by the load
-- balancer's backend, which learnt it from PROXY protocol v2); it is echoed in
-- the X-Lbbench-Client response header on every response.

local function now_s()
    local n = core.now()
    return n.sec + n.usec / 1e6
end

-- Wait until `deadline` (seconds on core.now()'s clock).
-- HAProxy's poller sleeps one millisecond longer than a timer asks (compute_poll_timeout
-- adds 1 ms so that a timer never fires early), so core.msleep(N) returns after N + 1 ms
-- and a little: ask for one millisecond less. When another event woke the loop and the
-- timer fired up to a millisecond early, yield the rest away (a few loop turns, < 1 ms).
local function wait_until(deadline)
    while true do
        local left_ms = (deadline - now_s()) * 1000
        if left_ms <= 0 then return end
        if left_ms >= 2 then core.msleep(math.floor(left_ms) - 1) else core.yield() end
    end
end

local bodies = {}
local MAX_CACHED = 1048576

local function body_of(n)
    local b = bodies[n]
    if b == nil then
        b = string.rep("x", n)
        if n <= MAX_CACHED then bodies[n] = b end
    end
    return b
end

local function first_header(applet, name)
    local h = applet.headers[name]
    if h == nil then return "" end
    return h[0] or ""
end

local function json_escape(s)
    return (s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

core.register_service("dummy", "http", function(applet)
    local t0 = now_s()
    local size, delay, status, echo = 0, 0, 200, false
    local qs = applet.qs or ""
    for k, v in qs:gmatch("([^&=]+)=([^&]*)") do
        if k == "size" then size = math.max(0, math.floor(tonumber(v) or 0))
        elseif k == "delay_ms" then delay = math.max(0, math.floor(tonumber(v) or 0))
        elseif k == "status" then
            local s = math.floor(tonumber(v) or 200)
            if s >= 200 and s <= 599 then status = s end
        elseif k == "echo" then echo = (v ~= "0")
        end
    end
    -- a request body (load.request_body) is read to its end, so the client's upload is real traffic
    if first_header(applet, "content-length") ~= "" then
        local got = applet:receive()
        while got ~= nil and got ~= "" do got = applet:receive() end
    end
    if delay > 0 then wait_until(t0 + delay / 1000) end
    local client = first_header(applet, "x-forwarded-for")
    local server = applet:get_var("txn.lbbench_server") or "?"
    local body
    if echo then
        body = string.format(
            '{"server":"%s","client":"%s","peer":"%s","method":"%s","path":"%s","qs":"%s"}\n',
            json_escape(server), json_escape(client), json_escape(applet.sf:src() or ""),
            json_escape(applet.method or ""), json_escape(applet.path or ""), json_escape(qs))
    else
        body = body_of(size)
    end
    applet:set_status(status)
    applet:add_header("content-type", echo and "application/json" or "application/octet-stream")
    applet:add_header("content-length", tostring(#body))
    applet:add_header("x-lbbench-server", server)
    applet:add_header("x-lbbench-client", client)
    applet:start_response()
    applet:send(body)
end)
