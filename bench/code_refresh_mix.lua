-- wrk script for `make bench`: the authorization-code + refresh mix of a web app's users.
--
-- Per thread, a request is chosen from what earlier responses handed back (wrk does not say which connection a
-- response belongs to, so codes and refresh tokens are pooled): a signed-in user's GET /authorize (302 with a
-- code), the code's redemption at /token (access + ID + refresh token), then refreshes of that grant (each
-- rotates the refresh token). About one authorization in four requests, the rest token requests.
-- Parameters come from the environment, set by bench/run.py.

local authorize = os.getenv("MIX_AUTHORIZE_PATH")
local cookie = os.getenv("MIX_COOKIE")
local basic = os.getenv("MIX_BASIC")
local redeem_tail = os.getenv("MIX_REDEEM_TAIL")  -- "&redirect_uri=...&code_verifier=..."

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   codes, refreshes = {}, {}
   counter, tokens, authorizations, failures = 0, 0, 0, 0
end

local form = {
   ["Content-Type"] = "application/x-www-form-urlencoded",
   ["Authorization"] = basic,
}

function request()
   counter = counter + 1
   if #codes > 0 then
      local code = table.remove(codes)
      return wrk.format("POST", "/token", form, "grant_type=authorization_code&code=" .. code .. redeem_tail)
   end
   if counter % 4 ~= 0 and #refreshes > 0 then
      local token = table.remove(refreshes, 1)
      return wrk.format("POST", "/token", form, "grant_type=refresh_token&refresh_token=" .. token)
   end
   return wrk.format("GET", authorize, { ["Cookie"] = cookie })
end

function response(status, headers, body)
   if status == 302 then
      local location = headers["Location"] or headers["location"] or ""
      local code = string.match(location, "[?&]code=([^&]+)")
      if code then
         table.insert(codes, code)
         authorizations = authorizations + 1
         return
      end
   elseif status == 200 then
      local token = string.match(body, '"refresh_token":"([^"]+)"')
      if token then
         table.insert(refreshes, token)
         tokens = tokens + 1
         return
      end
   end
   failures = failures + 1
end

function done(summary, latency, requests)
   local t, a, f = 0, 0, 0
   for _, thread in ipairs(threads) do
      t = t + thread:get("tokens")
      a = a + thread:get("authorizations")
      f = f + thread:get("failures")
   end
   io.write(string.format("mix: tokens %d authorizations %d failures %d\n", t, a, f))
end
