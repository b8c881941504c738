"""The Lua scripts of :class:`~xtasks.stores.redis.RedisStore`: each is one atomic round trip.

Every key is ``<P><tag>:...`` where ``P`` (``ARGV[1]``) is ``{prefix}:``, one hash tag, so
a cluster keeps every key in one slot and a script may touch any of them. Tags:

- ``r:<id>``: a run, a hash: ``d`` the record as JSON (``_sql.encode_run``'s columns), ``s``
  its status, ``t`` its task, ``k`` its sort key, ``a`` its age (Unix seconds of
  ``finished_at``, else ``scheduled_at``), ``o`` its lease owner (live runs only), ``n`` the
  reason ``reap_lost`` gave it (overrides the one in ``d``);
- ``ix``, ``ix:t:<task>``, ``ix:s:<status>``, ``ix:ts:<status>:<task>``: history, ZSETs of
  members ``<sort key><id>`` all at score 0, so Redis orders them by bytes: the sort key
  is 20 digits of ``scheduled_at`` (UTC, to the microsecond) then 16 of insertion order (the
  ``seq`` counter, kept when a record is replaced);
- ``lease``: ZSET run id -> lease expiry, in Redis ``TIME`` seconds: only live runs;
- ``done:<task>``: ZSET id -> finish order (``fseq``) of the task's final runs, for
  ``max_runs_per_task``; ``age``: ZSET id -> age of final runs, for ``max_age``;
- ``t:<task>``: a task, a hash: ``st`` state, ``lf`` last fire, ``cf``, ``al``, ``an``
  anchor, ``df`` definition, ``fl`` claim floor; times as 20-digit keys;
- ``c:<task>:<fire>``: a claim (``SET NX``, expiring after the claim horizon);
  ``cl:<task>``: ZSET fire -> claim time, from which expired claims raise the floor;
- ``chg`` (counter) and ``chgs`` (ZSET task -> its latest change number): state changes;
- ``rchg`` (counter) and ``rfeed`` (ZSET run id -> the number of its latest change): the
  run change feed; ``rpruned``: the highest number of a run retention dropped;
- ``tot``: the fleet's run totals, a hash of fields ``<what>|<status>|<task>`` where
  ``what`` is ``r`` (runs), ``m`` (timed runs), ``s`` (their seconds) or ``b<i>`` (timed
  runs in bucket ``i``);
- ``au``, ``au:t:<task>``: the audit trail, members ``<at, 20 digits><seq, 16><JSON>``;
  ``au:age``: ZSET of the same members by ``at`` in Unix seconds, for ``max_age``;
- ``rp:<token>``, ``ax:<id>``: short-lived marks that make a retried call (a reply lost on
  the wire) return what the first attempt did instead of doing it twice.

No script compares strings with ``<``: Lua's uses the server's locale. Times compare as
fixed-width digit strings cut into numbers (:data:`_PRELUDE`'s ``cmp``).
"""

from __future__ import annotations

__all__ = [
    "ADD_AUDIT",
    "CHANGES",
    "CHANGE_STATE",
    "CLAIM",
    "LIST_RUNS",
    "REAP",
    "RENEW",
    "RUN_CHANGES",
    "SAVE_RUNS",
    "SAVE_TASKS",
]

_PRELUDE = """
local P = ARGV[1]
local LIVE = {queued = true, waiting = true, running = true}

-- Compare digit strings of equal length, 12 digits at a time: -1, 0 or 1.
local function cmp(a, b)
  for i = 1, #a, 12 do
    local x, y = tonumber(string.sub(a, i, i + 11)), tonumber(string.sub(b, i, i + 11))
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  return 0
end

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# Runs: index upkeep, deletion, retention.
_RUNS = """
local function index_keys(task, status)
  return {P .. 'ix', P .. 'ix:t:' .. task, P .. 'ix:s:' .. status,
          P .. 'ix:ts:' .. status .. ':' .. task}
end

local function index(id, task, status, k)
  for _, key in ipairs(index_keys(task, status)) do redis.call('ZADD', key, 0, k .. id) end
end

local function unindex(id, task, status, k)
  for _, key in ipairs(index_keys(task, status)) do redis.call('ZREM', key, k .. id) end
end

-- The run's latest change gets the next number of the feed.
local function changed(id)
  redis.call('ZADD', P .. 'rfeed', redis.call('INCR', P .. 'rchg'), id)
end

-- Add a run that became final to the totals; seconds and bucket are '' when untimed.
local function count(task, status, seconds, bucket)
  local tail = '|' .. status .. '|' .. task
  redis.call('HINCRBY', P .. 'tot', 'r' .. tail, 1)
  if seconds ~= '' then
    redis.call('HINCRBY', P .. 'tot', 'm' .. tail, 1)
    redis.call('HINCRBYFLOAT', P .. 'tot', 's' .. tail, seconds)
    redis.call('HINCRBY', P .. 'tot', 'b' .. bucket .. tail, 1)
  end
end

local function drop_run(id)
  local rk = P .. 'r:' .. id
  local f = redis.call('HMGET', rk, 's', 't', 'k')
  if not f[1] then return end
  local number = redis.call('ZSCORE', P .. 'rfeed', id)
  if number then
    redis.call('ZREM', P .. 'rfeed', id)
    if tonumber(number) > tonumber(redis.call('GET', P .. 'rpruned') or '0') then
      redis.call('SET', P .. 'rpruned', number)
    end
  end
  unindex(id, f[2], f[1], f[3])
  redis.call('ZREM', P .. 'lease', id)
  redis.call('ZREM', P .. 'age', id)
  redis.call('ZREM', P .. 'done:' .. f[2], id)
  redis.call('DEL', rk)
end

-- A final record counts towards retention: newest to finish last.
local function finished(id, task, age)
  redis.call('ZADD', P .. 'done:' .. task, redis.call('INCR', P .. 'fseq'), id)
  redis.call('ZADD', P .. 'age', age, id)
end

-- max_runs_per_task (0: none): drop the task's final runs that finished first.
local function trim(task, keep)
  if keep <= 0 then return end
  local key = P .. 'done:' .. task
  local extra = redis.call('ZCARD', key) - keep
  if extra > 0 then
    for _, id in ipairs(redis.call('ZRANGE', key, 0, extra - 1)) do drop_run(id) end
  end
end

-- max_age (0: none): drop up to `budget` final runs, and audit records, older than it.
local function expire_old(t, max_age, budget)
  if max_age <= 0 then return end
  local cutoff = '(' .. string.format('%.6f', t - max_age)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'age', '-inf', cutoff,
                                 'LIMIT', 0, budget)) do
    drop_run(id)
  end
  local ages = P .. 'au:age'
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', ages, '-inf', cutoff, 'LIMIT', 0, budget)) do
    local task = cjson.decode(string.sub(m, 37))[1]
    redis.call('ZREM', P .. 'au', m)
    redis.call('ZREM', P .. 'au:t:' .. task, m)
    redis.call('ZREM', ages, m)
  end
end
"""

#: ARGV: P, lease_ttl, keep, max_age, then per record: id, task, status, sort key,
#: JSON, replica, age, seconds and bucket ('' if untimed). Returns the ids refused
#: because their run is lost (fenced).
SAVE_RUNS = (
    _PRELUDE
    + _RUNS
    + """
local t = now()
local ttl, keep, max_age = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local refused = {}
local written = 0
for i = 5, #ARGV, 9 do
  local id, task, status, sk = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local rk = P .. 'r:' .. id
  local old = redis.call('HMGET', rk, 's', 't', 'k')
  if old[1] == 'lost' then
    refused[#refused + 1] = id
  else
    local k
    if old[1] then
      k = sk .. string.sub(old[3], 21)
      if not LIVE[old[1]] then
        redis.call('ZREM', P .. 'done:' .. old[2], id)
        redis.call('ZREM', P .. 'age', id)
      end
      if k ~= old[3] or task ~= old[2] or status ~= old[1] then
        unindex(id, old[2], old[1], old[3])
        index(id, task, status, k)
      end
    else
      k = sk .. string.format('%016d', redis.call('INCR', P .. 'seq'))
      index(id, task, status, k)
    end
    redis.call('HSET', rk, 'd', ARGV[i + 4], 's', status, 't', task, 'k', k, 'a', ARGV[i + 6])
    if LIVE[status] then
      redis.call('HSET', rk, 'o', ARGV[i + 5])
      redis.call('ZADD', P .. 'lease', t + ttl, id)
    else
      redis.call('HDEL', rk, 'o')
      redis.call('ZREM', P .. 'lease', id)
      if not old[1] or LIVE[old[1]] then count(task, status, ARGV[i + 7], ARGV[i + 8]) end
    end
    changed(id)
    if not LIVE[status] then
      finished(id, task, ARGV[i + 6])
      trim(task, keep)
    end
    written = written + 1
  end
end
expire_old(t, max_age, 2 * written + 10)
return refused
"""
)

#: ARGV: P, lease_ttl, replica, ids... Returns the ids the replica does not hold.
RENEW = (
    _PRELUDE
    + """
local t = now()
local ttl, replica = tonumber(ARGV[2]), ARGV[3]
local gone = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', P .. 'lease', id)
      and redis.call('HGET', P .. 'r:' .. id, 'o') == replica then
    redis.call('ZADD', P .. 'lease', 'XX', t + ttl, id)
  else
    gone[#gone + 1] = id
  end
end
return gone
"""
)

#: ARGV: P, token, keep, limit. Returns id, JSON, reason for each run marked lost. A retry
#: with the same token (its reply was lost) gets the same answer, not an empty one.
REAP = (
    _PRELUDE
    + _RUNS
    + """
local mark = P .. 'rp:' .. ARGV[2]
if redis.call('EXISTS', mark) == 1 then return redis.call('LRANGE', mark, 1, -1) end
local t = now()
local keep, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', '(' .. string.format('%.6f', t),
                       'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(due) do
  redis.call('ZREM', P .. 'lease', id)
  local rk = P .. 'r:' .. id
  local f = redis.call('HMGET', rk, 's', 't', 'k', 'o', 'd', 'a')
  if f[1] and LIVE[f[1]] then
    local reason = 'lost: its replica ' .. (f[4] or '') .. ' went silent past its lease'
    unindex(id, f[2], f[1], f[3])
    index(id, f[2], 'lost', f[3])
    redis.call('HSET', rk, 's', 'lost', 'n', reason)
    redis.call('HDEL', rk, 'o')
    changed(id)
    count(f[2], 'lost', '', '')
    finished(id, f[2], f[6])
    trim(f[2], keep)
    out[#out + 1] = id
    out[#out + 1] = f[5]
    out[#out + 1] = reason
  end
end
if #out > 0 then  -- (reaping nothing again is as good an answer)
  redis.call('RPUSH', mark, '')
  for i = 1, #out, 300 do
    redis.call('RPUSH', mark, unpack(out, i, math.min(i + 299, #out)))
  end
  redis.call('EXPIRE', mark, 300)
end
return out
"""
)

#: ARGV: P, offset, limit, index key suffixes... (several: one per status, merged). Returns
#: JSON, status, reason (or nil) for each run of the page, newest first.
LIST_RUNS = (
    _PRELUDE
    + """
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = offset + limit
if limit <= 0 then return {} end
local lists = {}
for i = 4, #ARGV do lists[#lists + 1] = redis.call('ZREVRANGE', P .. ARGV[i], 0, n - 1) end
local merged = lists[1] or {}
if #lists > 1 then
  merged = {}
  local pos = {}
  for j = 1, #lists do pos[j] = 1 end
  while #merged < n do
    local best, top = nil, nil
    for j = 1, #lists do
      local m = lists[j][pos[j]]
      if m and (best == nil or cmp(string.sub(m, 1, 36), top) > 0) then
        best, top = j, string.sub(m, 1, 36)
      end
    end
    if best == nil then break end
    merged[#merged + 1] = lists[best][pos[best]]
    pos[best] = pos[best] + 1
  end
end
local out = {}
for i = offset + 1, math.min(#merged, n) do
  local f = redis.call('HMGET', P .. 'r:' .. string.sub(merged[i], 37), 'd', 's', 'n')
  if f[1] then
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
  end
end
return out
"""
)

#: ARGV: P, after, limit. Returns the latest change number, the highest one pruned, then
#: number, JSON, status, reason (or nil) for each run changed after ``after``, oldest first.
RUN_CHANGES = (
    _PRELUDE
    + """
local out = {redis.call('GET', P .. 'rchg') or '0', redis.call('GET', P .. 'rpruned') or '0'}
local limit = tonumber(ARGV[3])
if limit <= 0 then return out end
local found = redis.call('ZRANGEBYSCORE', P .. 'rfeed', '(' .. ARGV[2], '+inf', 'WITHSCORES',
                         'LIMIT', 0, limit)
for i = 1, #found, 2 do
  local f = redis.call('HMGET', P .. 'r:' .. found[i], 'd', 's', 'n')
  out[#out + 1] = found[i + 1]
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[3] or false
end
return out
"""
)

#: ARGV: P, token, horizon, then per fire: task, fire key. Returns 1 (won) or 0 per fire.
CLAIM = (
    _PRELUDE
    + """
local t = now()
local token, horizon = ARGV[2], tonumber(ARGV[3])
local floors, seen, out = {}, {}, {}
for i = 4, #ARGV, 2 do
  local task, fire = ARGV[i], ARGV[i + 1]
  local tk, log = P .. 't:' .. task, P .. 'cl:' .. task
  local floor = floors[task]
  if floor == nil then
    -- Claims whose key may have expired raise the floor first: a pruned claim stays taken.
    floor = redis.call('HGET', tk, 'fl') or ''
    local edge = string.format('%.6f', t - horizon + 1)
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', edge)
    if #old > 0 then
      for _, f in ipairs(old) do
        if floor == '' or cmp(f, floor) > 0 then floor = f end
      end
      redis.call('ZREMRANGEBYSCORE', log, '-inf', edge)
      redis.call('HSET', tk, 'fl', floor)
    end
    floors[task] = floor
  end
  local won = 0
  local pair = task .. fire  -- unambiguous: the fire key has a fixed width
  if not seen[pair] and (floor == '' or cmp(fire, floor) > 0) then
    local key = P .. 'c:' .. task .. ':' .. fire
    if redis.call('SET', key, token, 'NX', 'EX', horizon) or redis.call('GET', key) == token then
      won = 1  -- (the second test: this very call, retried after its reply was lost)
      redis.call('ZADD', log, 'NX', t, fire)
      local last = redis.call('HGET', tk, 'lf')
      if not last or cmp(fire, last) > 0 then redis.call('HSET', tk, 'lf', fire) end
    end
  end
  seen[pair] = true
  out[#out + 1] = won
end
return out
"""
)

_TASKS = """
-- Save a task's progress; its state only when `force` or the task has no record yet.
-- `definition` is '' for none (the stored one stays), else '=' and the text.
local function save_task(task, state, last, failures, alerting, anchor, definition, force)
  local tk = P .. 't:' .. task
  local old = redis.call('HMGET', tk, 'lf', 'an')
  if force or redis.call('EXISTS', tk) == 0 then redis.call('HSET', tk, 'st', state) end
  redis.call('HSET', tk, 'cf', failures, 'al', alerting)
  if last ~= '' and (not old[1] or cmp(last, old[1]) > 0) then redis.call('HSET', tk, 'lf', last) end
  if anchor ~= '' and not old[2] then redis.call('HSET', tk, 'an', anchor) end
  if definition ~= '' then redis.call('HSET', tk, 'df', string.sub(definition, 2)) end
end
"""

#: ARGV: P, then per task: name, state, last fire key or '', failures, alerting, anchor or
#: '', definition ('' or '=' and the text).
SAVE_TASKS = (
    _PRELUDE
    + _TASKS
    + """
for i = 2, #ARGV, 7 do
  save_task(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
            ARGV[i + 6], false)
end
return 0
"""
)

#: ARGV: P, channel, then the fields of one task as SAVE_TASKS takes them. Returns the
#: change number, published on the channel.
CHANGE_STATE = (
    _PRELUDE
    + _TASKS
    + """
save_task(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], true)
local n = redis.call('INCR', P .. 'chg')
redis.call('ZADD', P .. 'chgs', n, ARGV[3])
redis.call('PUBLISH', ARGV[2], n)
return n
"""
)

#: ARGV: P, after. Returns the highest change number, then task, state pairs.
CHANGES = (
    _PRELUDE
    + """
local out = {redis.call('GET', P .. 'chg') or '0'}
for _, task in ipairs(redis.call('ZRANGEBYSCORE', P .. 'chgs', '(' .. ARGV[2], '+inf')) do
  out[#out + 1] = task
  out[#out + 1] = redis.call('HGET', P .. 't:' .. task, 'st') or 'active'
end
return out
"""
)

#: ARGV: P, id, at key, at seconds, task, JSON, max_age. Adds the record once per id even
#: when retried.
ADD_AUDIT = (
    _PRELUDE
    + _RUNS
    + """
if redis.call('SET', P .. 'ax:' .. ARGV[2], '1', 'NX', 'EX', 300) then
  local m = ARGV[3] .. string.format('%016d', redis.call('INCR', P .. 'aseq')) .. ARGV[6]
  redis.call('ZADD', P .. 'au', 0, m)
  redis.call('ZADD', P .. 'au:t:' .. ARGV[5], 0, m)
  redis.call('ZADD', P .. 'au:age', ARGV[4], m)
end
expire_old(now(), tonumber(ARGV[7]), 10)
return 0
"""
)
