-- wrk script: every request asks for a distinct rendition (a cache miss, so real transform work),
-- and every response is counted by status; 429/503 without Retry-After are counted separately.
-- Usage: wrk ... http://127.0.0.1:PORT -- /v1/TENANT/images/ID [fixed]
-- ("fixed": always the same path and options, i.e. cache hits after the first)
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  base = args[1]
  fixed = args[2] == "fixed"
  counter = 0
  counts = {}
  missing_retry = 0
  sample = ""
end

function request()
  if fixed then
    return wrk.format("GET", base .. "?w=64")
  end
  counter = counter + 1
  local n = counter + tid * 1000003
  local path = base .. "?w=" .. (n % 300 + 1) .. "&q=" .. (math.floor(n / 300) % 100 + 1)
  return wrk.format("GET", path)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status >= 300 and sample == "" then
    sample = string.sub(tostring(body), 1, 200)
  end
  if (status == 429 or status == 503) and headers["retry-after"] == nil
      and headers["Retry-After"] == nil then
    missing_retry = missing_retry + 1
  end
end

function done(summary, latency, requests)
  local total = {}
  local missing = 0
  for _, t in ipairs(threads) do
    local s = t:get("sample")
    if s ~= "" then
      io.write("SAMPLE " .. string.gsub(s, "\n", " ") .. "\n")
    end
    for code, count in pairs(t:get("counts")) do
      total[code] = (total[code] or 0) + count
    end
    missing = missing + t:get("missing_retry")
  end
  for code, count in pairs(total) do
    io.write(string.format("STATUS %d %d\n", code, count))
  end
  local e = summary.errors
  io.write(string.format("MISSING_RETRY_AFTER %d\n", missing))
  io.write(string.format("ERRORS %d %d %d %d\n", e.connect, e.read, e.write, e.timeout))
  io.write(string.format("TOTAL %d %d\n", summary.requests, summary.duration))
  io.write(string.format("P99_MS %.1f\n", latency:percentile(99) / 1000))
end
