#!lua name=notifylist
-- The notifylist-proxy function library (Redis 7.0+). Loaded with FUNCTION LOAD REPLACE by every
-- proxy at start and after every reconnect. __PREFIX__ is replaced by the proxy's internal prefix.
--
-- Why functions: a write and its events must commit together (one function call is atomic, is
-- replicated as one unit and is queued as one command inside MULTI), and every path that reports an
-- expiry must go through one atomic remove-then-push so that it is reported exactly once.
--
-- Per database (a function runs in its caller's selected database, so "this db" is implicit):
--   __PREFIX__registry  hash  pattern -> list
--   __PREFIX__expiry    zset  key -> absolute deadline in ms (Redis clock, PEXPIRETIME)
--   __PREFIX__stats     hash  events -> number of events pushed
--   __PREFIX__backfill  hash  pattern -> SCAN cursor of its pending backfill
-- Channels: __PREFIX__changes (registry changes: see src/notify/changes.ts for the messages),
-- __PREFIX__wake (a new earliest deadline).
--
-- The proxy matches keys against its cached registry and passes candidate (pattern, list) pairs;
-- every pair is verified here against the registry before use, so a stale proxy cache can only
-- cost an extra lookup, never a wrong event.

-- Bumped whenever a function's interface or behaviour changes: a proxy never replaces a newer one.
local LIBRARY_VERSION = 2

local PREFIX = '__PREFIX__'
local REGISTRY = PREFIX .. 'registry'
local EXPIRY = PREFIX .. 'expiry'
local STATS = PREFIX .. 'stats'
local BACKFILL = PREFIX .. 'backfill'
local CHANGES = PREFIX .. 'changes'
local WAKE = PREFIX .. 'wake'

local function arity_error(command)
  return redis.error_reply("ERR wrong number of arguments for '" .. command .. "' command")
end

local function starts_with(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

-- JSON string escaping such that JSON.parse(event).key is the key's exact text. Bytes >= 0x80
-- are passed through unchanged (UTF-8 keys stay UTF-8).
local JSON_ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
  ['\b'] = '\\b', ['\f'] = '\\f' }
local function json_escape(s)
  return (string.gsub(s, '[%c"\\]', function(c)
    return JSON_ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end))
end

local function event_text(key, op)
  return '{"key":"' .. json_escape(key) .. '","op":"' .. op .. '"}'
end

-- Redis's clock in ms. A key is expired when now > deadline (src/db.c keyIsExpired).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- ARGV[first] = number of candidate triples, then (key index, pattern, list) triples.
-- Returns: per key index, the verified lists (deduplicated, in first-seen order); index after.
local function verified_lists(argv, first)
  local count = tonumber(argv[first])
  local current = {}
  local lists_by_key = {}
  for i = 0, count - 1 do
    local base = first + 1 + 3 * i
    local key_index, pattern, list = tonumber(argv[base]), argv[base + 1], argv[base + 2]
    local registered = current[pattern]
    if registered == nil then
      registered = redis.call('HGET', REGISTRY, pattern)
      current[pattern] = registered
    end
    if registered == list then
      local lists = lists_by_key[key_index]
      if not lists then
        lists = {}
        lists_by_key[key_index] = lists
      end
      if not lists[list] then
        lists[list] = true
        lists[#lists + 1] = list
      end
    end
  end
  return lists_by_key, first + 1 + 3 * count
end

local function no_permission(what)
  return redis.error_reply('NOPERM notifylist: this user has no permissions to ' .. what)
end

-- Refuses, before anything is read or written, a user who may not read the registry.
local function check_registry_read()
  if not redis.acl_check_cmd('hget', REGISTRY, 'x') then return no_permission('read ' .. REGISTRY) end
  return nil
end

-- Refuses (before anything is written) what would make the function fail halfway: an event
-- list that holds another type, or an ACL user who may not run one of the commands the library
-- runs for a matching key (its own redis.call would otherwise abort with a script error).
local function check_targets(keys, lists_by_key)
  if next(lists_by_key) == nil then return nil end
  for index, lists in pairs(lists_by_key) do
    if not redis.acl_check_cmd('pexpiretime', keys[index]) or not redis.acl_check_cmd('object', 'encoding', keys[index]) then
      return no_permission('run PEXPIRETIME and OBJECT ENCODING on ' .. keys[index])
    end
    for _, list in ipairs(lists) do
      if not redis.acl_check_cmd('type', list) or not redis.acl_check_cmd('rpush', list, 'x') then
        return no_permission('RPUSH to the event list ' .. list)
      end
      local kind = redis.call('TYPE', list)['ok']
      if kind ~= 'none' and kind ~= 'list' then
        return redis.error_reply('WRONGTYPE notifylist: the event list ' .. list .. ' holds a ' .. kind .. ', not a list')
      end
    end
  end
  for _, command in ipairs({ 'zscore', 'zrem', 'zrange' }) do
    if not redis.acl_check_cmd(command, EXPIRY, 'x', 'x') then return no_permission('run ' .. command .. ' on ' .. EXPIRY) end
  end
  if not redis.acl_check_cmd('zadd', EXPIRY, '0', 'x') then return no_permission('run zadd on ' .. EXPIRY) end
  if not redis.acl_check_cmd('hincrby', STATS, 'events', '1') then return no_permission('run hincrby on ' .. STATS) end
  if not redis.acl_check_cmd('time') then return no_permission('run time') end
  if not redis.acl_check_cmd('publish', WAKE, 'x') then return no_permission('publish to ' .. WAKE) end
  return nil
end

local function push_event(key, op, lists)
  if not lists or #lists == 0 then return 0 end
  local text = event_text(key, op)
  for _, list in ipairs(lists) do
    redis.call('RPUSH', list, text)
  end
  redis.call('HINCRBY', STATS, 'events', #lists)
  return #lists
end

-- Does the key exist? OBJECT ENCODING looks up without publishing a key-miss notification (the
-- client's own command may never have missed), unlike EXISTS, TYPE and PEXPIRETIME. It still lets
-- Redis expire the key (and publish `expired`) if it has run out.
local function key_exists(key)
  -- A missing key is false (RESP2 conversion) or nil (RESP3, inside run_command): both falsy.
  if redis.call('OBJECT', 'ENCODING', key) then return true end
  return false
end

-- A key's deadline (-2: no key, -1: no TTL).
local function key_deadline(key)
  if not key_exists(key) then return -2 end
  return redis.call('PEXPIRETIME', key)
end

-- The one place that reports an indexed key's expiry: removes the index entry and pushes
-- `expired` only if the indexed incarnation's deadline has passed. Exactly once, whoever calls.
-- Touching the key (PEXPIRETIME) lets Redis delete an expired key now, so Redis's own
-- notifications agree with ours. Returns the events pushed and whether an entry remains.
-- `now` (Redis's clock, ms) is read only when the key has an entry, unless the caller has it.
local function settle(key, lists, now)
  local deadline = tonumber(redis.call('ZSCORE', EXPIRY, key))
  if not deadline then return 0, false end
  now = now or now_ms()
  local current = key_deadline(key)
  if deadline >= now then
    -- Not due. Keep the entry true to the key (changed or deleted outside the proxy).
    if current == -2 or current == -1 then
      redis.call('ZREM', EXPIRY, key)
      return 0, false
    elseif current ~= deadline then
      redis.call('ZADD', EXPIRY, current, key)
    end
    return 0, true
  end
  redis.call('ZREM', EXPIRY, key)
  return push_event(key, 'expired', lists), false
end

local function is_error(reply)
  return type(reply) == 'table' and reply['err'] ~= nil
end

-- SET's condition: 'nx', 'xx' or nil. (A value equal to "NX" is never at an option position
-- that matters: with a conflicting or misplaced option Redis answers a syntax error.)
local function set_condition(args)
  local condition = nil
  for i = 4, #args do
    local option = string.lower(args[i])
    if option == 'nx' or option == 'xx' then condition = option end
  end
  return condition
end

-- Lua 5.1 unpacks at most about 8000 values onto its C stack; larger MSET/MSETNX/DEL/UNLINK
-- calls run in slices, which is the same inside one (atomic) function call.
local UNPACK_SLICE = 4000 -- even: slices keep key-value and field-value pairs together

-- `command [key] values[from..]`, one call per slice; stops at the first error and returns it,
-- else returns the replies.
local function pcall_in_slices(command, key, values, from)
  local replies = {}
  for first = from, #values, UNPACK_SLICE do
    local last = math.min(#values, first + UNPACK_SLICE - 1)
    local reply
    if key then
      reply = redis.pcall(command, key, unpack(values, first, last))
    else
      reply = redis.pcall(command, unpack(values, first, last))
    end
    if is_error(reply) then return reply end
    replies[#replies + 1] = reply
  end
  return replies
end

local function run_command(name, args)
  if #args <= UNPACK_SLICE then return redis.pcall(unpack(args)) end
  if name == 'mset' or name == 'msetnx' then
    if name == 'msetnx' then
      for i = 2, #args, 2 do
        if key_exists(args[i]) then return 0 end
      end
    end
    local replies = pcall_in_slices('MSET', nil, args, 2)
    if is_error(replies) then return replies end
    if name == 'msetnx' then return 1 end
    return redis.status_reply('OK')
  elseif name == 'del' or name == 'unlink' then
    local replies = pcall_in_slices(args[1], nil, args, 2)
    if is_error(replies) then return replies end
    local removed = 0
    for _, reply in ipairs(replies) do removed = removed + reply end
    return removed
  end
  return redis.pcall(unpack(args))
end

-- Did the command write? For SET, `condition` is its NX/XX (set_condition) and `before_exists`
-- whether the key existed before the command (read only for NX/XX).
local function command_wrote(name, reply, condition, before_exists)
  if is_error(reply) then return false end
  if name == 'set' then
    if condition == 'nx' then return not before_exists end
    if condition == 'xx' then return before_exists end
    return true
  end
  if name == 'setnx' or name == 'msetnx' then return reply == 1 end
  return true -- setex, psetex, getset, mset
end

-- Writes whose events the library knows (REDIS-FACTS.md): each fires `set` per written key.
local SET_FAMILY = { set = true, setnx = true, setex = true, psetex = true, getset = true, mset = true, msetnx = true }

-- Keeps a key's index entry true after a command that may have changed its TTL or removed it
-- (EXPIRE*, PERSIST, GETEX, DEL, UNLINK, GETDEL, RENAME*, COPY, RESTORE). A key that is gone was
-- deleted, not expired: its entry is dropped without an event.
local function sync_index(key, had_entry, surely_exists)
  local deadline = surely_exists and redis.call('PEXPIRETIME', key) or key_deadline(key)
  if deadline > 0 then
    redis.call('ZADD', EXPIRY, deadline, key)
    local first = redis.call('ZRANGE', EXPIRY, 0, 0)[1]
    if first == key then redis.call('PUBLISH', WAKE, deadline) end
  elseif had_entry ~= false then
    redis.call('ZREM', EXPIRY, key)
  end
  return deadline
end

-- COPY's destination database, or nil when it copies within this one.
local function copy_target_db(args)
  for i = 4, #args - 1 do
    if string.lower(args[i]) == 'db' then return args[i + 1] end
  end
  return nil
end

-- A key that left this database (MOVE, COPY ... DB): index it in its new database, under the
-- registrations of that database. Must run last: it leaves this function in the other database.
local function index_in_other_db(db, key, argv, now)
  redis.call('SELECT', db)
  local lists_by_key = verified_lists(argv, 1)
  if lists_by_key[2] then
    -- An indexed incarnation there that ran out before the command (MOVE/COPY deleted it as
    -- expired when they looked the destination up) is reported now, before its entry is reused.
    settle(key, lists_by_key[2], now)
    sync_index(key)
  end
end

-- FCALL notifylist_write <numkeys> <keys...> <candidates...> <command> <args...>
-- Runs the client's command with pcall and, only if it wrote, pushes one `set` event per
-- (written key, verified list); keeps the expiry index true. Returns the command's own reply.
-- Candidate key indexes refer to KEYS; for MOVE, KEYS[2] stands for the key in the target db.
local function notifylist_write(keys, argv)
  local refused = check_registry_read()
  if refused then return refused end
  local lists_by_key, command_at = verified_lists(argv, 1)
  refused = check_targets(keys, lists_by_key)
  if refused then return refused end

  local args = {}
  for i = command_at, #argv do args[#args + 1] = argv[i] end
  local name = string.lower(args[1])

  -- Settle first: an indexed incarnation that has already expired is reported before the write.
  local indexed = {}
  for index, key in ipairs(keys) do
    if lists_by_key[index] then
      local _, remains = settle(key, lists_by_key[index])
      indexed[index] = remains
    end
  end

  local condition, before_exists = nil, nil
  if name == 'set' and lists_by_key[1] then
    condition = set_condition(args)
    if condition then before_exists = key_exists(keys[1]) end
  end
  local other_db = (name == 'move' and args[3]) or (name == 'copy' and copy_target_db(args)) or nil
  if other_db and not redis.acl_check_cmd('select', other_db) then
    return no_permission('SELECT ' .. other_db)
  end
  -- MOVE / COPY ... DB: Redis's clock before the command, to settle the destination database.
  local before = nil
  if other_db then before = now_ms() end

  -- RESP3 conversion keeps a null a null (RESP2 would turn it into false, which a RESP3 client
  -- would receive as #f); the function's return value is then encoded for the client's protocol.
  redis.setresp(3)
  local reply = run_command(name, args)
  redis.setresp(2)

  if SET_FAMILY[name] then
    if command_wrote(name, reply, condition, before_exists) then
      for index, key in ipairs(keys) do
        local lists = lists_by_key[index]
        if lists then
          push_event(key, 'set', lists)
          -- A deadline already in the past (SET ... PXAT <past>): Redis drops the key at once.
          if sync_index(key, indexed[index], true) == -2 then push_event(key, 'expired', lists) end
        end
      end
    end
  elseif not is_error(reply) then
    if name == 'move' then
      if reply == 1 then
        redis.call('ZREM', EXPIRY, keys[1])
        index_in_other_db(args[3], keys[1], argv, before)
      end
    elseif name == 'copy' and copy_target_db(args) then
      if reply == 1 then index_in_other_db(copy_target_db(args), keys[2], argv, before) end
    else
      for index, key in ipairs(keys) do
        if lists_by_key[index] then sync_index(key) end
      end
    end
  end
  return reply
end

-- FCALL notifylist_flush 0 <databases> FLUSHDB|FLUSHALL [ASYNC|SYNC]
-- Registrations are configuration, like function libraries: a flush through the proxy removes
-- every key (and with them the expiry index) but keeps the registrations.
local function notifylist_flush(_, argv)
  local databases = tonumber(argv[1])
  local args = {}
  for i = 2, #argv do args[#args + 1] = argv[i] end
  local all = string.lower(args[1]) == 'flushall'
  local saved = {}
  if all then
    for db = 0, databases - 1 do
      redis.call('SELECT', db)
      saved[db] = redis.call('HGETALL', REGISTRY)
    end
  else
    saved[-1] = redis.call('HGETALL', REGISTRY)
  end
  local reply = redis.pcall(unpack(args))
  if is_error(reply) then return reply end
  for db, fields in pairs(saved) do
    if #fields > 0 then
      if db >= 0 then redis.call('SELECT', db) end
      local restored = pcall_in_slices('HSET', REGISTRY, fields, 1)
      if is_error(restored) then return restored end
    end
  end
  return reply
end

-- FCALL notifylist_swapdb 0 SWAPDB <index1> <index2>: registrations are per database and move
-- with the data; the change message, published when the swap really happens (also at EXEC),
-- makes every proxy reload its registry.
local function notifylist_swapdb(_, argv)
  local reply = redis.pcall(unpack(argv))
  if not is_error(reply) then redis.call('PUBLISH', CHANGES, 'reload') end
  return reply
end

-- FCALL notifylist_info 0 <databases> <n> <n proxy state lines> <the client's arguments...>
-- INFO-style text: this proxy's state (name:value lines, from the proxy) and, per database, what
-- Redis holds.
local function notifylist_info(_, argv)
  local databases, fields = tonumber(argv[1]), tonumber(argv[2])
  if #argv ~= 2 + fields then return arity_error('notifylist.info') end
  local lines = { '# notifylist' }
  for i = 3, 2 + fields do lines[#lines + 1] = argv[i] end
  local now = now_ms()
  for db = 0, databases - 1 do
    redis.call('SELECT', db)
    local registrations = redis.call('HLEN', REGISTRY)
    local indexed = redis.call('ZCARD', EXPIRY)
    local events = tonumber(redis.call('HGET', STATS, 'events')) or 0
    if db == 0 then
      local holder = redis.call('GET', PREFIX .. 'reaper')
      lines[#lines + 1] = 'reaper_lease_holder:' .. (holder or '')
    end
    if registrations > 0 or indexed > 0 or events > 0 then
      local overdue = redis.call('ZCOUNT', EXPIRY, '-inf', '(' .. now)
      lines[#lines + 1] = string.format('db%d:registrations=%d,indexed=%d,overdue=%d,events=%d',
        db, registrations, indexed, overdue, events)
    end
  end
  return table.concat(lines, '\r\n') .. '\r\n'
end

-- FCALL notifylist_expired <numkeys> <keys...> <candidates...>
-- Reports keys whose indexed deadline has passed (from the keyevent subscription or the reaper).
local function notifylist_expired(keys, argv)
  local lists_by_key = verified_lists(argv, 1)
  local refused = check_targets(keys, lists_by_key)
  if refused then return refused end
  local now = now_ms()
  local pushed = 0
  for index, key in ipairs(keys) do
    pushed = pushed + settle(key, lists_by_key[index] or {}, now)
  end
  return pushed
end

-- FCALL notifylist_backfill 0 <count>: bounded SCAN steps of pending backfills: index the keys
-- that match a pending pattern, have a TTL and no entry yet. A step costs what it scans (about
-- min(DBSIZE, count) per SCAN call, a budget of 4 x count per call): patterns are picked without
-- reading them all, and a small database lets one call finish many patterns. Returns the number
-- of backfills still pending.
local function notifylist_backfill(_, argv)
  local count = tonumber(argv[1])
  local budget = 4 * count
  local per_scan = math.min(redis.call('DBSIZE'), count) + 1
  local pending = redis.call('HLEN', BACKFILL)
  local earliest = nil
  while pending > 0 and budget > 0 do
    local picked = redis.call('HRANDFIELD', BACKFILL, 1, 'WITHVALUES')
    local pattern, cursor = picked[1], picked[2]
    if not redis.call('HGET', REGISTRY, pattern) then
      redis.call('HDEL', BACKFILL, pattern)
      pending = pending - 1
    else
      local step = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
      budget = budget - per_scan
      for _, key in ipairs(step[2]) do
        if not starts_with(key, PREFIX) then
          local deadline = redis.call('PEXPIRETIME', key)
          if deadline > 0 and redis.call('ZADD', EXPIRY, 'NX', deadline, key) == 1 then
            if not earliest or deadline < earliest then earliest = deadline end
          end
        end
      end
      if step[1] == '0' then
        redis.call('HDEL', BACKFILL, pattern)
        pending = pending - 1
      else
        redis.call('HSET', BACKFILL, pattern, step[1])
      end
    end
  end
  if earliest then redis.call('PUBLISH', WAKE, earliest) end
  return pending
end

-- FCALL notifylist_set 0 <pattern> <list>
local function notifylist_set(_, argv)
  if #argv ~= 2 then return arity_error('notifylist.set') end
  local pattern, list = argv[1], argv[2]
  if starts_with(list, PREFIX) then
    return redis.error_reply('ERR notifylist: the list name must not start with the internal prefix ' .. PREFIX)
  end
  if not redis.acl_check_cmd('hset', REGISTRY, pattern, list) then
    return no_permission('write ' .. REGISTRY)
  end
  redis.call('HSET', REGISTRY, pattern, list)
  -- Keys that already match and already have a TTL get indexed in the background.
  redis.call('HSET', BACKFILL, pattern, '0')
  redis.call('PUBLISH', CHANGES, string.format('set %d:%d:', #pattern, #list) .. pattern .. list)
  return redis.status_reply('OK')
end

-- FCALL notifylist_del 0 <pattern>
local function notifylist_del(_, argv)
  if #argv ~= 1 then return arity_error('notifylist.del') end
  if not redis.acl_check_cmd('hdel', REGISTRY, argv[1]) then
    return no_permission('write ' .. REGISTRY)
  end
  local removed = redis.call('HDEL', REGISTRY, argv[1])
  redis.call('HDEL', BACKFILL, argv[1])
  if removed == 1 then redis.call('PUBLISH', CHANGES, 'del ' .. argv[1]) end
  return removed
end

-- FCALL_RO notifylist_list 0
local function notifylist_list(_, argv)
  if #argv ~= 0 then return arity_error('notifylist.list') end
  if not redis.acl_check_cmd('hgetall', REGISTRY) then
    return no_permission('read ' .. REGISTRY)
  end
  return redis.call('HGETALL', REGISTRY)
end

-- FCALL notifylist_lease 1 <lease key> <holder id> <ttl ms>: take or renew the reaper lease.
local function notifylist_lease(keys, argv)
  local holder = redis.call('GET', keys[1])
  if holder == false or holder == argv[1] then
    redis.call('SET', keys[1], argv[1], 'PX', argv[2])
    return 1
  end
  return 0
end

-- FCALL notifylist_release 1 <lease key> <holder id>
local function notifylist_release(keys, argv)
  if redis.call('GET', keys[1]) == argv[1] then
    redis.call('DEL', keys[1])
    return 1
  end
  return 0
end

-- FCALL_RO notifylist_version 0: which library this is (proxies never replace a newer one).
local function notifylist_version()
  return LIBRARY_VERSION
end

-- Redis refuses some commands above maxmemory (denyoom: SET, COPY, RESTORE, ...) and not others
-- (DEL, EXPIRE, FLUSHALL, SWAPDB, ...): each runs through a function that is refused exactly then.
redis.register_function('notifylist_write', notifylist_write)
redis.register_function{ function_name = 'notifylist_write_allow_oom', callback = notifylist_write, flags = { 'allow-oom' } }
redis.register_function('notifylist_expired', notifylist_expired)
redis.register_function{ function_name = 'notifylist_flush', callback = notifylist_flush, flags = { 'allow-oom' } }
redis.register_function{ function_name = 'notifylist_swapdb', callback = notifylist_swapdb, flags = { 'allow-oom' } }
redis.register_function{ function_name = 'notifylist_info', callback = notifylist_info, flags = { 'no-writes' } }
redis.register_function('notifylist_backfill', notifylist_backfill)
redis.register_function('notifylist_set', notifylist_set)
redis.register_function('notifylist_del', notifylist_del)
redis.register_function{ function_name = 'notifylist_list', callback = notifylist_list, flags = { 'no-writes' } }
redis.register_function('notifylist_lease', notifylist_lease)
redis.register_function('notifylist_release', notifylist_release)
redis.register_function{ function_name = 'notifylist_version', callback = notifylist_version, flags = { 'no-writes', 'allow-stale', 'allow-oom' } }
