-- busbar cluster mode (SPEC §7, docs/cluster.md): every compound operation on the counters
-- the nodes share, as one server-side script. Loaded once per connection (SCRIPT LOAD) and
-- called by SHA: EVALSHA <sha> 0 <op> <prefix> <args...>. Each call is atomic on the server.
--
-- Time is the server's (TIME), so every node agrees on minutes, days and lease expiry.
-- Keys (P = cluster.key_prefix):
--   P k:<id>:b:<tag>     budget of a period: c = committed (spent + reservations), s = spent,
--                        from = the period it carried reservations over from.
--                        tag: t (total), d<day number> (daily), m<year*12+month-1> (monthly)
--   P k:<id>:rpm:<min>   requests in a UTC minute     P k:<id>:tpm:<min>  tokens in it
--   P k:<id>:r           reservations (zset: id -> lease expiry ms)
--   P k:<id>:rd          reservation details: id -> "cost charge minute tag", or "x<ms>" once
--                        released by lease expiry (the settlement still bills it)
--   P k:<id>:x           expired reservations (zset: id -> when), forgotten after an hour
--   P revoked            ids of revoked and deleted keys (admission refuses them at once)
--   P spend:<YYYY-MM-DD> per key x day counters: <id>:r requests, :c cost (micro-USD), :i :o
--                        :cr :cw :rs tokens (input, output, cache read/write, reasoning)
--   P spend:days         the days that have counters
--   P keys, P keys:log   the key catalogue (id -> JSON) and its change stream
--   P rc:<batch>         reconciliations already applied (idempotency, one hour)
--   P brk, P brk:log     open breaker cells (name -> "until streak node") and their events
--   P probe:<cell>       the node holding a cell's half-open probe (lease)
-- Numbers stay below 2^53 (Lua numbers are doubles); I() writes them without an exponent.

local op, P = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(now / 86400000)

local function I(x)
  return string.format('%.0f', x)
end

local function num(v)
  return tonumber(v or '0') or 0
end

-- days since 1970-01-01 -> year, month, day (proleptic Gregorian, H. Hinnant's algorithm)
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function day_string(dn)
  local y, m, d = civil(dn)
  return string.format('%04d-%02d-%02d', y, m, d)
end

-- current and previous period tags of a period ('0' total, '1' daily, '2' monthly)
local function tags(period)
  if period == '1' then
    return 'd' .. day, 'd' .. (day - 1)
  elseif period == '2' then
    local y, m = civil(day)
    local k = y * 12 + m - 1
    return 'm' .. k, 'm' .. (k - 1)
  end
  return 't', nil
end

local function K(id)
  return P .. 'k:' .. id .. ':'
end

-- The current period's budget hash; a new period starts with the reservations still
-- outstanding in the previous one (they are billed in the period they complete in).
local function bucket(k, period)
  local cur, prev = tags(period)
  local b = k .. 'b:' .. cur
  if prev and redis.call('EXISTS', b) == 0 then
    local pb = k .. 'b:' .. prev
    local carry = num(redis.call('HGET', pb, 'c')) - num(redis.call('HGET', pb, 's'))
    if carry < 0 then carry = 0 end
    redis.call('HSET', b, 'c', I(carry), 's', '0', 'from', prev)
    redis.call('PEXPIRE', b, (period == '1' and 3 or 70) * 86400000)
  end
  return b, cur
end

local function parse(d)
  local cost, charge, minute, tag = string.match(d, '^(%d+) (%d+) (%d+) (%S+)$')
  return tonumber(cost), tonumber(charge), minute, tag
end

-- give back a reservation's cost to the bucket that holds it
local function uncommit(k, b, cur, tag, cost)
  local target = k .. 'b:' .. tag
  if tag == cur or redis.call('HGET', b, 'from') == tag then target = b end
  if redis.call('HINCRBY', target, 'c', I(-cost)) < 0 then
    redis.call('HSET', target, 'c', '0')
  end
end

local function tpm_sub(key, n)
  if n > 0 and redis.call('EXISTS', key) == 1 and redis.call('DECRBY', key, I(n)) < 0 then
    redis.call('SET', key, '0', 'KEEPTTL')
  end
end

local function tpm_add(key, n)
  if n > 0 then
    redis.call('INCRBY', key, I(n))
    redis.call('PEXPIRE', key, 120000)
  end
end

-- Release reservations whose lease ran out (their node died or lost Redis for a lease):
-- their cost is given back; the entry stays as "x<ms>" so a late settlement still bills.
local function reap(k, period)
  local ids = redis.call('ZRANGEBYSCORE', k .. 'r', '-inf', now, 'LIMIT', 0, 64)
  if #ids > 0 then
    local b, cur = bucket(k, period)
    for _, rid in ipairs(ids) do
      local d = redis.call('HGET', k .. 'rd', rid)
      if d and string.sub(d, 1, 1) ~= 'x' then
        local cost, charge, minute, tag = parse(d)
        if cost then
          uncommit(k, b, cur, tag, cost)
          tpm_sub(k .. 'tpm:' .. minute, charge)
        end
        redis.call('HSET', k .. 'rd', rid, 'x' .. now)
        redis.call('ZADD', k .. 'x', I(now), rid)
      end
      redis.call('ZREM', k .. 'r', rid)
    end
    local old = redis.call('ZRANGEBYSCORE', k .. 'x', '-inf', now - 3600000, 'LIMIT', 0, 64)
    for _, rid in ipairs(old) do
      redis.call('HDEL', k .. 'rd', rid)
      redis.call('ZREM', k .. 'x', rid)
    end
  end
end

-- n completed requests of cost micro-USD: the day's spend counters (zero counts are not
-- written; the day joins spend:days with its key's first request)
local function spend(id, dstr, cost, n, tin, tout, tcr, tcw, trs)
  local h = P .. 'spend:' .. dstr
  if redis.call('HINCRBY', h, id .. ':r', I(n)) == n and
      redis.call('SADD', P .. 'spend:days', dstr) == 1 then
    redis.call('PEXPIRE', h, 400 * 86400000)
  end
  local f = {c = cost, i = tin, o = tout, cr = tcr, cw = tcw, rs = trs}
  for name, v in pairs(f) do
    if v > 0 then redis.call('HINCRBY', h, id .. ':' .. name, I(v)) end
  end
end

-- the period's budget: committed += delta, spent += cost
local function budget_add(b, delta, cost)
  if delta ~= 0 and redis.call('HINCRBY', b, 'c', I(delta)) < 0 then
    redis.call('HSET', b, 'c', '0')
  end
  if cost > 0 then redis.call('HINCRBY', b, 's', I(cost)) end
end

if op == 'admit' then
  -- id rid has_budget budget period rpm tpm max_parallel est_tokens cost lease_ms
  -- -> {verdict, retry_after_secs}: 0 ok, 1 revoked, 5 rate limited, 6 budget exceeded.
  -- Only what the key limits is counted (an unlimited key costs no window counters).
  local id, rid = ARGV[3], ARGV[4]
  local has_budget, budget, period = ARGV[5] == '1', num(ARGV[6]), ARGV[7]
  local rpm, tpm, maxp = num(ARGV[8]), num(ARGV[9]), num(ARGV[10])
  local est, cost, lease = num(ARGV[11]), num(ARGV[12]), num(ARGV[13])
  if redis.call('SISMEMBER', P .. 'revoked', id) == 1 then return {1, 0} end
  local k = K(id)
  reap(k, period)
  local minute = math.floor(now / 60000)
  local retry = 60 - math.floor((now % 60000) / 1000)
  if maxp > 0 and redis.call('ZCARD', k .. 'r') >= maxp then return {5, 1} end
  local rk, tk = k .. 'rpm:' .. minute, k .. 'tpm:' .. minute
  if rpm > 0 and num(redis.call('GET', rk)) >= rpm then return {5, retry} end
  -- an estimate above the whole allowance is charged the allowance (it runs alone)
  local charge = 0
  if tpm > 0 then
    charge = est > tpm and tpm or est
    if num(redis.call('GET', tk)) + charge > tpm then return {5, retry} end
  end
  local cur = tags(period)
  if has_budget then
    local b
    b, cur = bucket(k, period)
    if num(redis.call('HGET', b, 'c')) + cost > budget then return {6, 0} end
    redis.call('HINCRBY', b, 'c', I(cost))
  else
    cost = 0
  end
  if rpm > 0 then
    redis.call('INCR', rk)
    redis.call('PEXPIRE', rk, 120000)
  end
  tpm_add(tk, charge)
  redis.call('ZADD', k .. 'r', I(now + lease), rid)
  redis.call('HSET', k .. 'rd', rid, I(cost) .. ' ' .. I(charge) .. ' ' .. minute .. ' ' .. cur)
  return {0, 0}

elseif op == 'settle' then
  -- id rid period billed cost tokens in out cache_read cache_write reasoning day
  -- -> 1 settled, 0 already settled (a resend after a lost answer: nothing twice)
  local id, rid, period, billed = ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1'
  local cost, tokens = num(ARGV[7]), num(ARGV[8])
  if not billed then cost = 0 end
  local k = K(id)
  local d = redis.call('HGET', k .. 'rd', rid)
  if not d then return 0 end
  redis.call('HDEL', k .. 'rd', rid)
  local b, cur = bucket(k, period)
  local delta = cost
  if string.sub(d, 1, 1) == 'x' then
    redis.call('ZREM', k .. 'x', rid) -- its lease ran out: released already, billed now
  else
    redis.call('ZREM', k .. 'r', rid)
    local rcost, charge, minute, tag = parse(d)
    if rcost then
      if tag == cur or redis.call('HGET', b, 'from') == tag then
        delta = delta - rcost
      elseif rcost > 0 then
        uncommit(k, b, cur, tag, rcost)
      end
      -- TPM (charged only for keys with a TPM limit): a lower actual gives the difference
      -- back to its minute, a higher one is added to the current minute; a release gives
      -- the whole charge back
      if charge > 0 then
        if not billed then
          tpm_sub(k .. 'tpm:' .. minute, charge)
        elseif tokens < charge then
          tpm_sub(k .. 'tpm:' .. minute, charge - tokens)
        else
          tpm_add(k .. 'tpm:' .. math.floor(now / 60000), tokens - charge)
        end
      end
    end
  end
  budget_add(b, delta, cost)
  if billed then
    spend(id, ARGV[14] ~= '' and ARGV[14] or day_string(day), cost, 1, num(ARGV[9]),
      num(ARGV[10]), num(ARGV[11]), num(ARGV[12]), num(ARGV[13]))
  end
  return 1

elseif op == 'renew' then
  -- lease_ms then pairs: id rid ... -> how many reservations were no longer held
  local lease, gone = num(ARGV[3]), 0
  for i = 4, #ARGV - 1, 2 do
    local z = K(ARGV[i]) .. 'r'
    if not redis.call('ZSCORE', z, ARGV[i + 1]) then
      gone = gone + 1
    else
      redis.call('ZADD', z, 'XX', I(now + lease), ARGV[i + 1])
    end
  end
  return gone

elseif op == 'reconcile' then
  -- batch id period day cost requests in out cache_read cache_write reasoning: spend of
  -- requests admitted locally while Redis was unreachable -> 1 applied, 0 applied before
  if not redis.call('SET', P .. 'rc:' .. ARGV[3], '1', 'NX', 'PX', 3600000) then return 0 end
  local b = bucket(K(ARGV[4]), ARGV[5])
  budget_add(b, num(ARGV[7]), num(ARGV[7]))
  spend(ARGV[4], ARGV[6], num(ARGV[7]), num(ARGV[8]), num(ARGV[9]), num(ARGV[10]),
    num(ARGV[11]), num(ARGV[12]), num(ARGV[13]))
  return 1

elseif op == 'spend' then
  -- since until key by ('' = no bound / every key; by: key or day)
  -- -> flat rows: group requests input output cache_read cache_write reasoning cost ...
  local since, upto, key, by = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local days = redis.call('SMEMBERS', P .. 'spend:days')
  table.sort(days)
  local acc, order = {}, {}
  local fields = {r = 1, i = 2, o = 3, cr = 4, cw = 5, rs = 6, c = 7}
  for _, dd in ipairs(days) do
    if (since == '' or dd >= since) and (upto == '' or dd <= upto) then
      local h = redis.call('HGETALL', P .. 'spend:' .. dd)
      for i = 1, #h - 1, 2 do
        local id, f = string.match(h[i], '^(.*):(%a+)$')
        if id and fields[f] and (key == '' or id == key) then
          local g = by == 'day' and dd or id
          if not acc[g] then
            acc[g] = {0, 0, 0, 0, 0, 0, 0}
            table.insert(order, g)
          end
          acc[g][fields[f]] = acc[g][fields[f]] + num(h[i + 1])
        end
      end
    end
  end
  table.sort(order)
  local out = {}
  for _, g in ipairs(order) do
    table.insert(out, g)
    for j = 1, 7 do table.insert(out, acc[g][j]) end
  end
  return out

elseif op == 'keyput' then
  -- id json revoked(0/1) deleted(0/1) updated_at: the catalogue entry, last writer wins by
  -- updated_at; revoked and deleted are final -> 1 stored (and announced), 0 kept the old
  local id, json, revoked, deleted, upd = ARGV[3], ARGV[4], ARGV[5] == '1', ARGV[6] == '1',
    num(ARGV[7])
  local cur = redis.call('HGET', P .. 'keys', id)
  if cur then
    local ok, c = pcall(cjson.decode, cur)
    if ok and type(c) == 'table' then
      if c.deleted then return 0 end
      local crev = c.revoked_at and c.revoked_at ~= cjson.null
      if crev and not revoked and not deleted then return 0 end
      if not revoked and not deleted and num(c.updated_at) > upd then return 0 end
      if cur == json then return 0 end
    end
  end
  redis.call('HSET', P .. 'keys', id, json)
  if revoked or deleted then redis.call('SADD', P .. 'revoked', id) end
  redis.call('XADD', P .. 'keys:log', 'MAXLEN', '~', '10000', '*', 'id', id, 'v', json)
  return 1

elseif op == 'lease' then
  -- cell node ms: the cluster-wide half-open probe of a breaker cell, taken or renewed by
  -- node -> 1 node holds it, 0 another node does
  local k = P .. 'probe:' .. ARGV[3]
  local cur = redis.call('GET', k)
  if cur and cur ~= ARGV[4] then return 0 end
  redis.call('SET', k, ARGV[4], 'PX', ARGV[5])
  return 1

elseif op == 'unlease' then
  -- cell node: give the probe up (the cell closed or opened again)
  local k = P .. 'probe:' .. ARGV[3]
  if redis.call('GET', k) == ARGV[4] then redis.call('DEL', k) end
  return 1
end
return redis.error_reply('busbar cluster script: unknown operation ' .. tostring(op))
