-- wrk script for `make bench-keys`, flat out: POST /v1/keys/validate {"units": 1, "consume": true}
-- for a random key from $KEYS_FILE on every request. An answer other than 200 with
-- "isValid":true counts as an error.
dofile(os.getenv("WRK_REPORT"))
local bodies = {}
for key in io.lines(os.getenv("KEYS_FILE")) do
  bodies[#bodies + 1] = '{"apiKey":"' .. key .. '","units":1,"consume":true}'
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  return wrk.format(nil, "/v1/keys/validate", nil, bodies[math.random(#bodies)])
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"isValid":true', 1, true) then
    invalid = invalid + 1
  end
end
