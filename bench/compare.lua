-- The requests of bench/compare.sh, one kind per run (BENCH_MODE), each for a customer
-- picked at random from the files compare.sh writes in BENCH_DATA (see bench_data.py):
--   detail           GET  /api/v1/customer/detail           a customer with a live session
--   account          GET  /contact/v1/get-account-info      the same sessions
--   create_new       POST /api/v1/customer/create           an address never seen
--   create_existing  POST /api/v1/customer/create           a loaded customer's address
--   match            POST /api/v1/customer/customer-match-customer   two loaded customers
--   list             GET  /api/v1/customer/customer-match-list       a customer with relations
--   search           GET  /api/v1/customer/list?q=…   a loaded customer's e-mail local part as the prefix
--   search_group     GET  /api/v1/customer/list?group=…&premium=true   a loaded group's premium members
-- Answers other than 2xx are counted by status and printed at the end ("statuses 404:12").
local mode = os.getenv("BENCH_MODE")
local data = os.getenv("BENCH_DATA")
local key = os.getenv("BENCH_KEY")
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

local function read_rows(name)
  local rows = {}
  for line in io.lines(data .. "/" .. name) do
    local fields = {}
    for field in line:gmatch("%S+") do
      table.insert(fields, field)
    end
    table.insert(rows, fields)
  end
  assert(#rows > 0, name .. " is empty")
  return rows
end

function init(args)
  -- Seeded from /dev/urandom: each thread, and each run, picks its own sequence.
  local f = io.open("/dev/urandom", "rb")
  local b = f:read(4)
  f:close()
  math.randomseed(b:byte(1) + b:byte(2) * 256 + b:byte(3) * 65536 + b:byte(4) * 16777216)
  run_tag = string.format("%08x", math.random(0, 2147483647))
  counter = 0
  statuses = {}
  if mode == "detail" or mode == "account" then
    rows = read_rows("sessions.txt")
  elseif mode == "list" then
    rows = read_rows("lists.txt")
  else
    rows = read_rows("customers.txt")
  end
end

local function pick()
  return rows[math.random(1, #rows)]
end

local function post(path, body)
  return wrk.format("POST", path .. "?apiKey=" .. key, {["Content-Type"] = "application/json"}, body)
end

function request()
  if mode == "detail" then
    local r = pick()
    return wrk.format("GET", "/api/v1/customer/detail?apiKey=" .. key .. "&identityId=" .. r[2]
      .. "&cuRefNo=" .. r[1] .. "&customerRealIp=1.1.1.1")
  elseif mode == "account" then
    local r = pick()
    return wrk.format("GET", "/contact/v1/get-account-info?apiKey=" .. key .. "&identityId=" .. r[2]
      .. "&customerRealIp=1.1.1.1")
  elseif mode == "create_new" then
    counter = counter + 1
    return post("/api/v1/customer/create", string.format(
      '{"email":"bench-%s-%d-%d@example.com","customerRealIp":"1.1.1.1"}', run_tag, thread_id, counter))
  elseif mode == "create_existing" then
    return post("/api/v1/customer/create", '{"email":"' .. pick()[2] .. '","customerRealIp":"1.1.1.1"}')
  elseif mode == "match" then
    local a, b = pick(), pick()
    while b[1] == a[1] do
      b = pick()
    end
    return post("/api/v1/customer/customer-match-customer",
      '{"managerCuRefNo":"' .. a[1] .. '","customerCuRefNo":"' .. b[1] .. '","notice":"bench"}')
  elseif mode == "list" then
    return wrk.format("GET", "/api/v1/customer/customer-match-list?apiKey=" .. key .. "&cuRefNo=" .. pick()[1])
  elseif mode == "search" then
    local prefix = string.match(pick()[2], "^[^@]+")
    return wrk.format("GET", "/api/v1/customer/list?apiKey=" .. key .. "&limit=20&q=" .. prefix)
  elseif mode == "search_group" then
    local groups = {"vip", "newsletter", "wholesale", "students", "staff", "loyalty"}
    return wrk.format("GET", "/api/v1/customer/list?apiKey=" .. key .. "&limit=20&premium=true&group=bench-"
      .. groups[math.random(1, #groups)])
  end
  error("unknown BENCH_MODE " .. tostring(mode))
end

function response(status, headers, body)
  if status > 299 then
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, status .. ":" .. n)
  end
  table.sort(parts)
  if #parts > 0 then
    print("statuses " .. table.concat(parts, " "))
  end
end
