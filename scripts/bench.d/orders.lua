-- wrk script for scripts/bench, part "orders": POST /api/v1/orders with two lines of two
-- distinct random products (quantity 1 each), rotating over the customers' access tokens.
--
-- usage: wrk ... -s orders.lua http://127.0.0.1:PORT -- DATA_FILE
-- DATA_FILE (written by orders_setup.py): "P <product id as JSON string>" and "T <token>" lines.
--
-- Only 201 counts as a placed order. done() prints one line the bench script parses:
--   ORDERS created=N other=M duration_us=D statuses=409:3,503:2
-- (statuses lists every non-201 status seen, or "-").

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("thread_no", counter)
    table.insert(threads, thread)
end

local products, tokens = {}, {}
local address = '"shipping_address":{"name":"Bench","line1":"1 Main St","city":"Berlin",'
    .. '"postal_code":"10115","country":"DE"}'

function init(args)
    local path = args[1]
    local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
    for line in f:lines() do
        local kind, value = line:match("^(%a) (.+)$")
        if kind == "P" then
            products[#products + 1] = value
        elseif kind == "T" then
            tokens[#tokens + 1] = value
        end
    end
    f:close()
    assert(#products >= 2, "need at least 2 products")
    assert(#tokens >= 1, "need at least 1 token")
    math.randomseed(os.time() * 1000 + (thread_no or 0) * 7919)
    -- threads start at different tokens so two threads do not move in step
    next_token = ((thread_no or 1) - 1) * 7 % #tokens
    created, other, codes = 0, 0, {}
end

function request()
    local a = math.random(#products)
    local b = math.random(#products - 1)
    if b >= a then b = b + 1 end             -- distinct from a
    next_token = next_token % #tokens + 1
    local body = '{"items":[{"product_id":' .. products[a] .. ',"quantity":1},{"product_id":'
        .. products[b] .. ',"quantity":1}],' .. address .. '}'
    return wrk.format("POST", "/api/v1/orders", {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. tokens[next_token],
    }, body)
end

function response(status, headers, body)
    if status == 201 then
        created = created + 1
    else
        other = other + 1
        codes[status] = (codes[status] or 0) + 1
        -- the first few problem bodies, to say why
        if other <= 3 then
            io.stderr:write(string.format("orders.lua: HTTP %d: %s\n", status, (body or ""):sub(1, 300)))
        end
    end
end

function done(summary, latency, requests)
    local c, o, merged = 0, 0, {}
    for _, t in ipairs(threads) do
        c = c + (t:get("created") or 0)
        o = o + (t:get("other") or 0)
        local codes_t = t:get("codes")
        if codes_t then
            for k, v in pairs(codes_t) do merged[k] = (merged[k] or 0) + v end
        end
    end
    local parts = {}
    for k, v in pairs(merged) do parts[#parts + 1] = k .. ":" .. v end
    table.sort(parts)
    io.write(string.format("ORDERS created=%d other=%d duration_us=%d statuses=%s\n",
        c, o, summary.duration, #parts > 0 and table.concat(parts, ",") or "-"))
end
