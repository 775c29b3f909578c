-- POST /api/v1/customer/create with a new address each request (the insert path).
local counter = 0
local thread_id = 0
function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
function request()
  counter = counter + 1
  local body = string.format('{"email":"bench-%d-%d-%d@example.com","customerRealIp":"1.1.1.1"}', os.time(), thread_id, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
