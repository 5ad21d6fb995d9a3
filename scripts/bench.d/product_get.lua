-- wrk script for scripts/bench, part "reads": GET /api/v1/products/{id} with an id drawn at
-- random, per request, from every seeded product (so the catalog's 100,000 products, spread over
-- its shards, are read, not one hot id).
--
-- usage: wrk ... -s product_get.lua http://127.0.0.1:PORT -- IDS_FILE
-- IDS_FILE (written by catalog-seed): one product id a line. The nginx baseline runs the same
-- script, so both sides are measured with the same load generator doing the same work.

-- each thread its own random sequence
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("thread_no", counter)
end

local paths = {}

function init(args)
    local file = args[1]
    local f = assert(io.open(file, "r"), "cannot open " .. tostring(file))
    for id in f:lines() do
        if id ~= "" then paths[#paths + 1] = "/api/v1/products/" .. id end
    end
    f:close()
    assert(#paths >= 1, "no product ids in " .. file)
    math.randomseed(os.time() * 1000 + (thread_no or 0) * 7919)
end

function request()
    return wrk.format("GET", paths[math.random(#paths)])
end
