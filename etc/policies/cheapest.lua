-- busbar routing script (pools.*.policy.script_file, route: script): cheapest first.
--
-- route(request, candidates, context) runs once per request, before failover walks the
-- order, inside a sandbox (no io, os, require, load, debug; string patterns are plain; a
-- per-call instruction budget, timeout_ms and a memory cap). See docs/routing.md.
--
-- It orders the pool's members by price (input + output USD per 1M tokens), members with an
-- open breaker or no free slot last, unpriced members after the priced ones. Members it
-- leaves out would still be tried after the ones it names (demoted, never dropped).
-- Requests that carry "x-busbar-tier: premium" leave the choice to the pool's weights.

local function cost(c)
  if c.price == nil then return math.huge end
  return c.price.input + c.price.output
end

local function usable(c)
  return c.breaker ~= "open" and (c.free_slots == nil or c.free_slots > 0)
end

function route(request, candidates, context)
  if request.headers["x-busbar-tier"] == "premium" then
    return { abstain = true }
  end
  table.sort(candidates, function(a, b)
    local ua, ub = usable(a), usable(b)
    if ua ~= ub then return ua end
    local ca, cb = cost(a), cost(b)
    if ca ~= cb then return ca < cb end
    return a.name < b.name
  end)
  local order = {}
  for i, c in ipairs(candidates) do order[i] = c.name end
  return { order = order }
end
