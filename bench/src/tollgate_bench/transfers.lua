-- wrk script for `make bench-transfers`: POST /v1/transfers of 1 cent between two random
-- wallets of $WALLETS, each request with an id of its own. An answer other than 201
-- counts as an error.
dofile(os.getenv("WRK_REPORT"))
local counter = 0
local wallets = tonumber(os.getenv("WALLETS"))
local run = os.getenv("RUN")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

function request()
  counter = counter + 1
  local a = math.random(wallets)
  local b = a % wallets + 1
  local body = string.format(
    '{"id":"%s-%d-%d","debit_account":"wallet:%d","credit_account":"wallet:%d","amount":1}',
    run, id or 0, counter, a, b)
  return wrk.format(nil, "/v1/transfers", nil, body)
end

function response(status, headers, body)
  if status ~= 201 then
    invalid = invalid + 1
  end
end
