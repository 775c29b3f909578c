-- GET /ping/v1 with a random well-formed PROD key per request: each one unknown to the
-- server. Seeded from /dev/urandom so that two wrk processes send different keys. Prints
-- the answers by status at the end ("answers 401:… 429:…").
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = io.open("/dev/urandom", "rb")
  local b = f:read(4)
  f:close()
  math.randomseed(b:byte(1) + b:byte(2) * 256 + b:byte(3) * 65536 + b:byte(4) * 16777216)
  statuses = {}
end

function request()
  local key = {}
  for i = 1, 28 do
    local n = math.random(1, #chars)
    key[i] = chars:sub(n, n)
  end
  return wrk.format("GET", "/ping/v1?apiKey=PROD" .. table.concat(key))
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
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
  print("answers " .. table.concat(parts, " "))
end
