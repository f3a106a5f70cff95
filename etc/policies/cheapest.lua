-- busbar routing script (pools.*.policy.script_file, route: script): cheapest first.
--
-- route(request, candidates, context) runs once per request, before failover walks the
-- order, inside a sandbox (no io, os, require, load, debug; string patterns are plain; a
-- per-call instruction budget, timeout_ms and a memory cap). See docs/routing.md.
--
-- It orders the pool's members by price (input + output USD per 1M tokens), members with an
-- open breaker or no free slot last, unpriced members after the priced ones, ties by name.
-- Members it leaves out would still be tried after the ones it names (demoted, never
-- dropped). Requests that carry "x-busbar-tier: premium" leave the choice to the weights.
-- It runs on every request: it sorts by insertion (pools are small) instead of calling
-- table.sort with a comparator, which costs more per call than the whole decision.

local huge = math.huge
local ABSTAIN = { abstain = true }

local function cost(c)
  local p = c.price
  local k = p and (p.input + p.output) or huge
  if c.breaker == "open" or c.free_slots == 0 then
    k = k + 1e12 -- unusable now: after every usable member, still in price order
  end
  return k
end

function route(request, candidates, context)
  if request.headers["x-busbar-tier"] == "premium" then
    return ABSTAIN
  end
  local order, keys = {}, {}
  for i = 1, #candidates do
    local c = candidates[i]
    local k, name = cost(c), c.name
    local j = i - 1
    while j > 0 and (keys[j] > k or (keys[j] == k and order[j] > name)) do
      keys[j + 1], order[j + 1] = keys[j], order[j]
      j = j - 1
    end
    keys[j + 1], order[j + 1] = k, name
  end
  return { order = order }
end
