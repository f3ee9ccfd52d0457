#!lua name=notifylist
-- The notifylist-proxy function library (Redis 7.0+). Loaded with FUNCTION LOAD REPLACE by every
-- proxy at start and after every reconnect. The proxy bakes in (see librarySource): __PREFIX__,
-- its internal prefix; __SECRET_HASH__, the SHA1 of the deployment's secret; and the commands it
-- rewrites into each write function.
--
-- Why functions: a write and its events must commit together (one function call is atomic, is
-- replicated as one unit and is queued as one command inside MULTI), and every path that reports an
-- expiry must go through one atomic remove-then-push so that it is reported exactly once.
--
-- Per database (a function runs in its caller's selected database, so "this db" is implicit):
--   __PREFIX__registry  hash  pattern -> tagged registration: list and owner (registry_value)
--   __PREFIX__expiry    zset  key -> absolute deadline in ms (Redis clock, PEXPIRETIME)
--   __PREFIX__tags      hash  key -> tag of its expiry entry (key, deadline)
--   __PREFIX__stats     hash  events -> number of events pushed; <proxy counter>:<op> -> events
--                             of that op the writes of one proxy pushed, not yet taken by it
--                             (the proxy adds them to its metrics and takes them back out)
--   __PREFIX__backfill  hash  pattern -> SCAN cursor of its pending backfill
--   __PREFIX__targets   hash  list -> tagged number of registrations pointing at it (derived from
--                             the registry: rebuilt when missing). Event targets produce no events
--                             of their own and are never indexed: a write to one runs plainly.
-- In database 0: __PREFIX__reaper (the reaper lease, tagged) and __PREFIX__secret (the secret:
-- read by proxies only, never by this library).
-- Channels: __PREFIX__changes (registry changes: see src/notify/changes.ts for the messages),
-- __PREFIX__wake (a new earliest deadline).
--
-- The proxy matches keys against its cached registry and passes candidate (pattern, list) pairs;
-- every pair is verified here against the registry before use, so a stale proxy cache can only
-- cost an extra lookup, never a wrong event.
--
-- Trust: these functions run with the caller's ACL user, so users who write registered keys need
-- rights on some internal keys (README: Security and trust model). What they could write there
-- by hand must never be taken for the library's own: every call must come from a proxy (it
-- carries the deployment's secret, see from_proxy), and every entry that leads to an event
-- (registration, event-target count, expiry entry, lease) carries a tag made with the secret.

-- Bumped whenever a function's interface or behaviour changes: a proxy never replaces a newer one.
local LIBRARY_VERSION = 4

local PREFIX = '__PREFIX__'
local REGISTRY = PREFIX .. 'registry'
local EXPIRY = PREFIX .. 'expiry'
local TAGS = PREFIX .. 'tags'
local STATS = PREFIX .. 'stats'
local BACKFILL = PREFIX .. 'backfill'
local TARGETS = PREFIX .. 'targets'
local CHANGES = PREFIX .. 'changes'
local WAKE = PREFIX .. 'wake'
local SECRET_HASH = '__SECRET_HASH__'
-- The commands the proxy rewrites into notifylist_write (refused above maxmemory, like them) and
-- into notifylist_write_allow_oom (the others): each function runs only its own.
local DENYOOM_WRITES = { __DENYOOM_WRITES__ }
local OTHER_WRITES = { __OTHER_WRITES__ }

-- ---- Calls from proxies, and tags ----

-- Every call from a proxy carries the deployment's secret as its first argument (FCALL arguments
-- are shown only by MONITOR and SLOWLOG, admin commands; the proxies keep the secret in a key users
-- are not given). A call without it is refused: no user can call these functions directly. Once a
-- call has proven the secret, later calls compare one string.
local proven_secret = nil
local tag_inner, tag_outer = nil, nil
local function from_proxy(secret)
  if proven_secret ~= nil and secret == proven_secret then return true end
  if type(secret) ~= 'string' or redis.sha1hex(secret) ~= SECRET_HASH then return false end
  proven_secret = secret
  tag_inner = redis.sha1hex('notifylist tag inner ' .. secret)
  tag_outer = redis.sha1hex('notifylist tag outer ' .. secret)
  return true
end

local function not_from_proxy()
  return redis.error_reply("ERR notifylist: this library's functions are called by notifylist-proxy only")
end

-- A tag over the fields that only holders of the secret can make (as HMAC: two SHA1s, with keys
-- derived from the secret; fields length-prefixed, so no two field lists give the same input).
-- src/security/secret.ts computes the same.
local function tag(...)
  local fields = { ... }
  for i = 1, #fields do fields[i] = #fields[i] .. ':' .. fields[i] end
  return redis.sha1hex(tag_outer .. redis.sha1hex(tag_inner .. table.concat(fields)))
end

local function arity_error(command)
  return redis.error_reply("ERR wrong number of arguments for '" .. command .. "' command")
end

local function starts_with(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

-- JSON string escaping of valid UTF-8 text: JSON.parse(event).key is the text.
local JSON_ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
  ['\b'] = '\\b', ['\f'] = '\\f' }
local function json_escape(s)
  if not string.find(s, '[%c"\\]') then return s end
  return (string.gsub(s, '[%c"\\]', function(c)
    return JSON_ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end))
end

-- Length of the valid UTF-8 sequence at byte i of s (RFC 3629: no overlong forms, no surrogates,
-- nothing above U+10FFFF: what a strict decoder accepts), or nil.
local function utf8_length(s, i)
  local c = string.byte(s, i)
  if c < 0x80 then return 1 end
  local n, lo, hi
  if c >= 0xC2 and c <= 0xDF then n, lo, hi = 2, 0x80, 0xBF
  elseif c == 0xE0 then n, lo, hi = 3, 0xA0, 0xBF
  elseif c == 0xED then n, lo, hi = 3, 0x80, 0x9F
  elseif c >= 0xE1 and c <= 0xEF then n, lo, hi = 3, 0x80, 0xBF
  elseif c == 0xF0 then n, lo, hi = 4, 0x90, 0xBF
  elseif c >= 0xF1 and c <= 0xF3 then n, lo, hi = 4, 0x80, 0xBF
  elseif c == 0xF4 then n, lo, hi = 4, 0x80, 0x8F
  else return nil end
  local second = string.byte(s, i + 1)
  if not second or second < lo or second > hi then return nil end
  for j = i + 2, i + n - 1 do
    local continuation = string.byte(s, j)
    if not continuation or continuation < 0x80 or continuation > 0xBF then return nil end
  end
  return n
end

-- The key as valid UTF-8 text (each byte that is not part of a valid sequence becomes U+FFFD),
-- and whether the key already was valid UTF-8.
local REPLACEMENT = '\239\191\189'
local function utf8_text(s)
  if not string.find(s, '[\128-\255]') then return s, true end
  local parts, from, i, valid = {}, 1, 1, true
  while i <= #s do
    local n = utf8_length(s, i)
    if n then
      i = i + n
    else
      parts[#parts + 1] = string.sub(s, from, i - 1)
      parts[#parts + 1] = REPLACEMENT
      valid = false
      i = i + 1
      from = i
    end
  end
  if valid then return s, true end
  parts[#parts + 1] = string.sub(s, from)
  return table.concat(parts), false
end

local BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1, d2, d3, d4 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64
    out[#out + 1] = string.sub(BASE64, d1 + 1, d1 + 1) .. string.sub(BASE64, d2 + 1, d2 + 1)
      .. (b and string.sub(BASE64, d3 + 1, d3 + 1) or '=') .. (c and string.sub(BASE64, d4 + 1, d4 + 1) or '=')
  end
  return table.concat(out)
end

-- Bytes of a key that its event cannot carry as they are: JSON escapes and non-ASCII.
local NOT_PLAIN = '[%c"\\\128-\255]'
-- A text without any of them (anchored: one pass over the text).
local ALL_PLAIN = '^[^%c"\\\128-\255]*$'

-- '","op":"<event>"}' per event name, made once.
local EVENT_SUFFIX = {}
local function event_suffix(op)
  local suffix = EVENT_SUFFIX[op]
  if not suffix then
    suffix = '","op":"' .. op .. '"}'
    EVENT_SUFFIX[op] = suffix
  end
  return suffix
end

-- Every event is valid UTF-8 JSON. A key that is not valid UTF-8 also comes exactly, as base64
-- in "key64"; valid UTF-8 keys give exactly {"key":"<key>","op":"<event>"}.
-- `plain`: the key is known to need neither escaping nor UTF-8 checks.
local function event_text(key, op, plain)
  -- Most keys need neither: one scan tells.
  if plain or not string.find(key, NOT_PLAIN) then return '{"key":"' .. key .. event_suffix(op) end
  local text, valid = utf8_text(key)
  if valid then return '{"key":"' .. json_escape(key) .. event_suffix(op) end
  return '{"key":"' .. json_escape(text) .. '","op":"' .. op .. '","key64":"' .. base64(key) .. '"}'
end

-- Redis's clock in ms. A key is expired when now > deadline (src/db.c keyIsExpired).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A registry value: <tag><owner length>:<owner><list>, the tag over (pattern, list, owner). The
-- owner is the ACL user who registered it ('' for registrations older than owners); the proxy
-- checks its rights for what it does for the registration under its own login.
local function registry_value(pattern, list, owner)
  return tag('registration', pattern, list, owner) .. #owner .. ':' .. owner .. list
end

-- The list and owner of a registry value the library made for `pattern`, else nil (no value, or
-- one written by hand). Checked values are remembered (one lookup next time; bounded).
local checked_values, checked_count = {}, 0
local function registration(pattern, value)
  if not value then return nil end
  local known = checked_values[value]
  if known and known.pattern == pattern then return known.list, known.owner end
  local digits = string.match(value, '^(%d+):', 41)
  if not digits then return nil end
  local owner_from = 41 + #digits + 1
  local owner_to = owner_from + tonumber(digits) - 1
  if owner_to > #value then return nil end
  local owner, list = string.sub(value, owner_from, owner_to), string.sub(value, owner_to + 1)
  if string.sub(value, 1, 40) ~= tag('registration', pattern, list, owner) then return nil end
  if checked_count >= 10000 then checked_values, checked_count = {}, 0 end
  checked_values[value] = { pattern = pattern, list = list, owner = owner }
  checked_count = checked_count + 1
  return list, owner
end

-- The list of `pattern` in this database's registry (nil: not registered), and its owner.
local function registered_list(pattern)
  return registration(pattern, redis.call('HGET', REGISTRY, pattern))
end

-- ARGV[first] = number of candidate triples (`<n>`, or `<n>/<proxy counter>` from a proxy that counts
-- its events: see notifylist_write), then (key index, pattern, list) triples; the key
-- index may be a range `first-last` (consecutive keys with the same candidate, as in a large MSET).
-- Returns: per key index, the verified lists (deduplicated, in first-seen order); index after.
-- Keys with the same lists share one table (so a large MSET makes a few tables, not one per key):
-- callers must not modify them. Indexes above `key_count` are ignored (a direct FCALL with a
-- huge range must not keep Redis busy).
-- Where the candidates start in the ARGV of notifylist_write (after the secret).
local CANDIDATES_AT = 2
local NO_LISTS = {} -- never modified
local function verified_lists(argv, first, key_count)
  local count = tonumber(string.match(argv[first], '^%d+'))
  local current = {}
  local lists_by_key = {}
  local grown = {} -- lists table -> list -> that table with the list added
  -- `lists` with `list` added: one shared table per combination.
  local function with(lists, list)
    local by_list = grown[lists]
    if not by_list then
      by_list = {}
      grown[lists] = by_list
    end
    local more = by_list[list]
    if not more then
      more = { [list] = true }
      for n, name in ipairs(lists) do
        more[n] = name
        more[name] = true
      end
      more[#more + 1] = list
      by_list[list] = more
    end
    return more
  end
  for i = 0, count - 1 do
    local base = first + 1 + 3 * i
    local indexes, pattern, list = argv[base], argv[base + 1], argv[base + 2]
    local registered = current[pattern]
    if registered == nil then
      registered = registered_list(pattern) or false
      current[pattern] = registered
    end
    if registered == list then
      local from, to = tonumber(indexes), nil
      if not from then
        from, to = string.match(indexes, '^(%d+)-(%d+)$')
        from = tonumber(from)
      end
      to = math.min(tonumber(to) or from, key_count)
      local alone = with(NO_LISTS, list)
      for key_index = from, to do
        local lists = lists_by_key[key_index]
        if lists == nil then
          lists_by_key[key_index] = alone -- the common case: the key's first list
        elseif not lists[list] then
          lists_by_key[key_index] = with(lists, list)
        end
      end
    end
  end
  return lists_by_key, first + 1 + 3 * count
end

local function is_error(reply)
  return type(reply) == 'table' and reply['err'] ~= nil
end

local function no_permission(what)
  return redis.error_reply('NOPERM notifylist: this user has no permissions to ' .. what)
end

-- Refuses, before anything is read or written, a user who may not read the registry.
local function check_registry_read()
  if not redis.acl_check_cmd('hget', REGISTRY, 'x') then return no_permission('read ' .. REGISTRY) end
  return nil
end

-- A TARGETS value: <count>:<tag over (list, count)>.
local function target_value(list, count)
  local text = string.format('%d', count)
  return text .. ':' .. tag('target', list, text)
end

-- The count of a TARGETS value the library made for `list`, else nil.
local function target_count(list, value)
  if not value then return nil end
  local count, made = string.match(value, '^(%d+):(%x+)$')
  if not count or made ~= tag('target', list, count) then return nil end
  return tonumber(count)
end

-- TARGETS is derived from the registry: rebuilt when missing while registrations exist (after a
-- flush, or with a registry written by an older library).
local function ensure_targets()
  if redis.call('TYPE', TARGETS)['ok'] ~= 'none' then return end
  local fields = redis.call('HGETALL', REGISTRY)
  local counts, lists = {}, {}
  for i = 1, #fields, 2 do
    local list = registration(fields[i], fields[i + 1])
    if list then
      if not counts[list] then lists[#lists + 1] = list end
      counts[list] = (counts[list] or 0) + 1
    end
  end
  for _, list in ipairs(lists) do redis.call('HSET', TARGETS, list, target_value(list, counts[list])) end
end

-- Adds `delta` to the number of registrations pointing at `list`.
local function count_target(list, delta)
  local count = (target_count(list, redis.call('HGET', TARGETS, list)) or 0) + delta
  if count > 0 then redis.call('HSET', TARGETS, list, target_value(list, count)) else redis.call('HDEL', TARGETS, list) end
end

-- Keeps TARGETS true when `pattern`, registered to `old` (nil: not registered), is about to point
-- at `list` (nil: about to be unregistered). Call before the registry changes.
local function track_target(old, list)
  ensure_targets()
  if old == list then return end
  if old then count_target(old, -1) end
  if list then count_target(list, 1) end
end

-- Lua 5.1 unpacks at most about 8000 values onto its C stack: larger MSET/MSETNX/DEL/UNLINK
-- calls, and every batch of values, go in slices, which is the same inside one (atomic) call.
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

-- The indexes (in `lists_by_key`, ascending) and keys of the keys that have verified lists.
local function registered_keys(keys, lists_by_key)
  local indexes, names = {}, {}
  for index = 1, #keys do
    if lists_by_key[index] then
      indexes[#indexes + 1] = index
      names[#names + 1] = keys[index]
    end
  end
  return indexes, names
end

-- Per registered key, one value of `command hash|zset field` (HGET/ZSCORE); for many keys with
-- the multi-field command (HMGET/ZMSCORE) when the user may run it: index -> value or false.
-- (pcall: a user who may not read TARGETS gets no target check; check_targets still refuses a
-- write that would overwrite one of its own event lists. EXPIRY's rights are checked before.)
local function lookup_each(keys, lists_by_key, single, multi, container)
  local values = {}
  if #keys > 16 and redis.acl_check_cmd(multi, container, 'x') then
    local indexes, names = registered_keys(keys, lists_by_key)
    local at = 0
    for _, reply in ipairs(pcall_in_slices(multi, container, names, 1)) do
      for _, value in ipairs(reply) do
        at = at + 1
        values[indexes[at]] = value
      end
    end
  else
    for index in pairs(lists_by_key) do
      local value = redis.pcall(single, container, keys[index])
      values[index] = type(value) ~= 'table' and value
    end
  end
  return values
end

-- Event targets never produce events: a key that is a target in this database loses its lists.
-- Many keys and few targets: the targets are read once instead of looking up every key.
local function drop_targets(keys, lists_by_key)
  if next(lists_by_key) == nil then return end
  if #keys > 16 and redis.acl_check_cmd('hlen', TARGETS) and redis.acl_check_cmd('hgetall', TARGETS)
    and redis.call('HLEN', TARGETS) < #keys then
    local targets = {}
    local fields = redis.call('HGETALL', TARGETS)
    for i = 1, #fields, 2 do
      if target_count(fields[i], fields[i + 1]) then targets[fields[i]] = true end
    end
    for index, key in ipairs(keys) do
      if targets[key] then lists_by_key[index] = nil end
    end
    return
  end
  for index, value in pairs(lookup_each(keys, lists_by_key, 'HGET', 'HMGET', TARGETS)) do
    if target_count(keys[index], value) then lists_by_key[index] = nil end
  end
end

-- The index deadlines of the keys that have lists: index -> deadline. Many keys are not looked up
-- one by one while the index is empty.
local function index_entries(keys, lists_by_key)
  if next(lists_by_key) == nil then return {} end
  if #keys > 16 and #redis.call('ZRANGE', EXPIRY, 0, 0) == 0 then return {} end
  local entries = lookup_each(keys, lists_by_key, 'ZSCORE', 'ZMSCORE', EXPIRY)
  for index, score in pairs(entries) do entries[index] = score and tonumber(score) or nil end
  return entries
end

-- What the library runs on its internal keys for a registered key: refused up front, not halfway.
local INDEX_READS = { 'zscore', 'zrem', 'zrange' }
local function check_internal_access()
  for _, command in ipairs(INDEX_READS) do
    if not redis.acl_check_cmd(command, EXPIRY, 'x', 'x') then return no_permission('run ' .. command .. ' on ' .. EXPIRY) end
  end
  if not redis.acl_check_cmd('zadd', EXPIRY, '0', 'x') then return no_permission('run zadd on ' .. EXPIRY) end
  for _, command in ipairs({ 'hget', 'hset', 'hdel' }) do
    if not redis.acl_check_cmd(command, TAGS, 'x', 'x') then return no_permission('run ' .. command .. ' on ' .. TAGS) end
  end
  if not redis.acl_check_cmd('hincrby', STATS, 'events', '1') then return no_permission('run hincrby on ' .. STATS) end
  if not redis.acl_check_cmd('time') then return no_permission('run time') end
  if not redis.acl_check_cmd('publish', WAKE, 'x') then return no_permission('publish to ' .. WAKE) end
  return nil
end

local function check_key_reads(key)
  if not redis.acl_check_cmd('pexpiretime', key) or not redis.acl_check_cmd('object', 'encoding', key) then
    return no_permission('run PEXPIRETIME and OBJECT ENCODING on ' .. key)
  end
  return nil
end

-- The type an event list holds if it is not a list (nil: a list, or no key yet).
local function other_type(list)
  local kind = redis.call('TYPE', list)['ok']
  if kind ~= 'none' and kind ~= 'list' then return kind end
  return nil
end

-- An event list's type: nil if it can take events, else the type it holds (or a NOPERM error).
local function list_problem(list)
  if not redis.acl_check_cmd('type', list) or not redis.acl_check_cmd('rpush', list, 'x') then
    return no_permission('RPUSH to the event list ' .. list)
  end
  return other_type(list)
end

-- Writes whose events the library knows (REDIS-FACTS.md): each fires `set` per written key.
local SET_FAMILY = { set = true, setnx = true, setex = true, psetex = true, getset = true, mset = true, msetnx = true }
-- Commands after which the library reads nothing of the written keys (the outcome is known:
-- MSET leaves no TTL, DEL removes the key).
local NO_READS_AFTER = { mset = true, del = true, unlink = true }

-- Refuses (before anything is written) what would make the function fail halfway: an event
-- list that holds another type (or that the command itself would overwrite before its events are
-- pushed), or an ACL user who may not run one of the commands the library runs for a matching key
-- (its own redis.call would otherwise abort with a script error).
local function check_targets(keys, lists_by_key, name)
  if next(lists_by_key) == nil then return nil end
  local refused = check_internal_access()
  if refused then return refused end
  local reads_after = not NO_READS_AFTER[name]
  local lists_seen, tables_seen = {}, {}
  for index, lists in pairs(lists_by_key) do
    if reads_after then
      refused = check_key_reads(keys[index])
      if refused then return refused end
    end
    if not tables_seen[lists] then
      tables_seen[lists] = true
      for _, list in ipairs(lists) do
        if not lists_seen[list] then
          lists_seen[list] = true
          local problem = list_problem(list)
          if type(problem) == 'table' then return problem end
          if problem then
            return redis.error_reply('WRONGTYPE notifylist: the event list ' .. list .. ' holds a ' .. problem .. ', not a list')
          end
        end
      end
    end
  end
  if SET_FAMILY[name] then
    for _, key in ipairs(keys) do
      if lists_seen[key] then
        return redis.error_reply('ERR notifylist: ' .. name .. ' would overwrite the event list ' .. key .. ' of a key it writes')
      end
    end
  end
  return nil
end

-- Events of one function call, pushed with one RPUSH per list (per slice), in the order added.
-- `lists`: the lists in first-use order (array part) and each list's texts (list name -> array
-- with its count in `n`). `by_table`: per lists table (verified_lists shares one table among keys
-- with the same lists), the text arrays of its lists, so that a large MSET appends each event
-- with one lookup instead of one per list.
-- `keys`: the keys of a large call, checked once (one pass over all of them together) for keys
-- that need escaping or UTF-8 checks; if there are none, no key is scanned again.
local function new_events(keys)
  local plain = keys ~= nil and #keys > 16 and string.find(table.concat(keys), ALL_PLAIN) ~= nil
  return { lists = {}, by_table = {}, count = 0, plain = plain, ops = {} }
end

-- Events pushed during the current notifylist_write call, by op (it tells the calling proxy).
local pushed_by_op = {}

-- The text arrays of the lists in `lists` (made on first use).
local function arrays_of(events, lists)
  local arrays = events.by_table[lists]
  if arrays then return arrays end
  arrays = {}
  local by_list = events.lists
  for n = 1, #lists do
    local list = lists[n]
    local texts = by_list[list]
    if not texts then
      texts = { n = 0 }
      by_list[list] = texts
      by_list[#by_list + 1] = list
    end
    arrays[n] = texts
  end
  events.by_table[lists] = arrays
  return arrays
end

local function append_text(arrays, text)
  for n = 1, #arrays do
    local texts = arrays[n]
    local count = texts.n + 1
    texts.n = count
    texts[count] = text
  end
  return #arrays
end

local function add_event(events, key, op, lists)
  local added = append_text(arrays_of(events, lists), event_text(key, op, events.plain))
  events.count = events.count + added
  events.ops[op] = (events.ops[op] or 0) + added
end

-- One event `op` for each key that has lists, in key order: add_event for many keys, with the
-- work per key kept to a concatenation and an append (a large MSET).
local function add_events(events, keys, lists_by_key, op)
  local plain, suffix = events.plain, event_suffix(op)
  local current, arrays, single = nil, nil, nil
  local count = 0
  for index = 1, #keys do
    local lists = lists_by_key[index]
    if lists then
      local key = keys[index]
      local text
      if plain then text = '{"key":"' .. key .. suffix else text = event_text(key, op) end
      if lists ~= current then
        current = lists
        arrays = arrays_of(events, lists)
        single = #arrays == 1 and arrays[1] or nil
      end
      if single then
        local n = single.n + 1
        single.n = n
        single[n] = text
        count = count + 1
      else
        count = count + append_text(arrays, text)
      end
    end
  end
  events.count = events.count + count
  events.ops[op] = (events.ops[op] or 0) + count
end

-- Pushes the events (every list was checked to take them); the counter is only statistics.
-- Once per events table.
local function push_events(events)
  if events.count == 0 then return 0 end
  local by_list = events.lists
  for n = 1, #by_list do
    local list = by_list[n]
    local texts = by_list[list]
    if texts.n == 1 then redis.call('RPUSH', list, texts[1]) else pcall_in_slices('RPUSH', list, texts, 1) end
  end
  redis.pcall('HINCRBY', STATS, 'events', events.count)
  for op, n in pairs(events.ops) do pushed_by_op[op] = (pushed_by_op[op] or 0) + n end
  return events.count
end

local function push_event(key, op, lists)
  if not lists or #lists == 0 then return 0 end
  local events = new_events()
  add_event(events, key, op, lists)
  return push_events(events)
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

-- Expiry entries: the deadline in EXPIRY, and in TAGS a tag over (key, deadline) that says the
-- library made the entry (an entry added by hand is never reported).
local function expiry_tag(key, deadline)
  return tag('expiry', key, string.format('%d', deadline))
end

local function index_key(key, deadline)
  redis.call('ZADD', EXPIRY, deadline, key)
  redis.call('HSET', TAGS, key, expiry_tag(key, deadline))
end

local function unindex_key(key)
  redis.call('ZREM', EXPIRY, key)
  redis.call('HDEL', TAGS, key)
end

-- Many keys' entries at once (in slices).
local function unindex_keys(keys)
  pcall_in_slices('ZREM', EXPIRY, keys, 1)
  pcall_in_slices('HDEL', TAGS, keys, 1)
end

local function made_by_library(key, deadline)
  return redis.call('HGET', TAGS, key) == expiry_tag(key, deadline)
end

-- The one place that reports an indexed key's expiry: removes or corrects the index entry, and
-- pushes `expired` only if the indexed incarnation is really gone after its deadline. Touching the
-- key (OBJECT ENCODING) lets Redis delete it now if it is due, so Redis's own notifications agree
-- with ours. A key that still exists after that with another deadline (or none) was written over
-- (SUNIONSTORE, SORT ... STORE, RESTORE REPLACE, DEL then LPUSH, ...): its indexed incarnation did
-- not expire, no event; unless `expired_by_redis` (Redis itself published `expired` for the key, so
-- it expired and was then created again by a write the proxy does not rewrite).
-- `deadline` (the entry's score) and `now` (Redis's clock, ms) are read here unless given.
-- Returns the events pushed, whether an entry remains, whether it remains unchanged, and the
-- entry's deadline.
local function settle(key, lists, now, deadline, expired_by_redis)
  deadline = deadline or tonumber(redis.call('ZSCORE', EXPIRY, key))
  if not deadline then return 0, false, false end
  now = now or now_ms()
  local current = key_deadline(key)
  -- Still the indexed incarnation (due on our clock but not yet on Redis's script clock: later).
  if current == deadline then return 0, true, true end
  -- An entry added by hand: dropped, never reported nor carried over.
  if not made_by_library(key, deadline) then
    unindex_key(key)
    return 0, false, false
  end
  local pushed = 0
  if deadline < now and (current == -2 or expired_by_redis) then pushed = push_event(key, 'expired', lists) end
  if current < 0 then
    unindex_key(key)
    return pushed, false, false, deadline
  end
  index_key(key, current)
  return pushed, true, false, deadline
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

-- Keeps a key's index entry true after a command that may have changed its TTL or removed it
-- (EXPIRE*, PERSIST, GETEX, DEL, UNLINK, GETDEL, RENAME*, COPY, RESTORE). A key that is gone was
-- deleted, not expired: its entry is dropped without an event.
local function sync_index(key, had_entry, surely_exists)
  local deadline = surely_exists and redis.call('PEXPIRETIME', key) or key_deadline(key)
  if deadline > 0 then
    index_key(key, deadline)
    local first = redis.call('ZRANGE', EXPIRY, 0, 0)[1]
    if first == key then redis.call('PUBLISH', WAKE, deadline) end
  elseif had_entry ~= false then
    unindex_key(key)
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
-- Runs after the write, so it cannot refuse: an event list there that cannot take events is
-- skipped.
local function index_in_other_db(db, key, argv, now)
  redis.call('SELECT', db)
  local lists_by_key = verified_lists(argv, CANDIDATES_AT, 2)
  drop_targets({ key, key }, lists_by_key)
  local lists = lists_by_key[2]
  if not lists then return end
  local usable = {}
  for _, list in ipairs(lists) do
    if list_problem(list) == nil then usable[#usable + 1] = list end
  end
  -- An indexed incarnation there that ran out before the command (MOVE/COPY deleted it as
  -- expired when they looked the destination up) is reported now, before its entry is reused.
  settle(key, usable, now, nil, true)
  sync_index(key)
end

-- A large MSET/MSETNX/DEL/UNLINK comes with no KEYS (see rewrite.ts keysInArgs): its keys, from
-- the command's own arguments.
local function keys_in_args(name, args)
  local keys, step = {}, 0
  if name == 'mset' or name == 'msetnx' then step = 2 elseif name == 'del' or name == 'unlink' then step = 1 end
  if step == 0 then return keys end
  local n = 0
  for i = 2, #args, step do
    n = n + 1
    keys[n] = args[i]
  end
  return keys
end

-- FCALL notifylist_write <numkeys> <keys...> <secret> <candidates...> <command> <args...>
-- Runs the client's command with pcall and, only if it wrote, pushes one `set` event per
-- (written key, verified list); keeps the expiry index true. Returns the command's own reply.
-- The reply must stay the command's, so the events pushed go to the calling proxy's counter
-- (`<n>/<proxy counter>` in the candidates) in STATS, field `<proxy counter>:<op>`.
-- Candidate key indexes refer to KEYS (a large MSET, MSETNX, DEL or UNLINK: to its keys, sent
-- without KEYS); for MOVE, KEYS[2] stands for the key in the target db.
-- Every check comes before the first write; nothing after the command can fail.
local function notifylist_write(keys, argv, allowed)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local refused = check_registry_read()
  if refused then return refused end
  pushed_by_op = {}
  local counter = string.match(argv[CANDIDATES_AT], '^%d+/(.+)$')
  -- (Keys read from the command's arguments are fewer than the arguments.)
  local lists_by_key, command_at = verified_lists(argv, CANDIDATES_AT, #keys > 0 and #keys or #argv)
  local args, argc = {}, 0
  for i = command_at, #argv do
    argc = argc + 1
    args[argc] = argv[i]
  end
  if argc == 0 then return arity_error('fcall') end
  local name = string.lower(args[1])
  if not allowed[name] then
    return redis.error_reply('ERR notifylist: ' .. name .. ' is not a command this function runs')
  end
  if #keys == 0 then
    keys = keys_in_args(name, args)
    -- Redis checks declared KEYS before running FCALL; for undeclared ones, the same refusal.
    for first = 2, #args, UNPACK_SLICE do
      if not redis.acl_check_cmd(name, unpack(args, first, math.min(#args, first + UNPACK_SLICE - 1))) then
        return redis.error_reply('NOPERM this user has no permissions to access one of the keys used as arguments')
      end
    end
  end
  drop_targets(keys, lists_by_key)

  refused = check_targets(keys, lists_by_key, name)
  if refused then return refused end
  local entries = index_entries(keys, lists_by_key)
  if next(entries) ~= nil and NO_READS_AFTER[name] then
    -- Settling reads the keys that have entries.
    for index in pairs(entries) do
      refused = check_key_reads(keys[index])
      if refused then return refused end
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

  -- Settle first: an indexed incarnation that has already expired is reported before the write.
  local indexed = {}
  if next(entries) ~= nil then
    local now = now_ms()
    for index, deadline in pairs(entries) do
      local _, remains = settle(keys[index], lists_by_key[index], now, deadline)
      indexed[index] = remains
    end
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
      local events = new_events(keys)
      local unindexed = {}
      if name == 'mset' or name == 'msetnx' then
        add_events(events, keys, lists_by_key, 'set')
        -- They leave the keys without a TTL.
        for index, remains in pairs(indexed) do
          if remains then unindexed[#unindexed + 1] = keys[index] end
        end
      else
        for index, key in ipairs(keys) do
          local lists = lists_by_key[index]
          if lists then
            add_event(events, key, 'set', lists)
            if sync_index(key, indexed[index] or false, true) == -2 then
              -- A deadline already in the past (SET ... PXAT <past>): Redis drops the key at once.
              add_event(events, key, 'expired', lists)
            end
          end
        end
      end
      unindex_keys(unindexed)
      push_events(events)
    end
  elseif not is_error(reply) then
    if name == 'move' then
      if reply == 1 then
        unindex_key(keys[1])
        index_in_other_db(args[3], keys[1], argv, before)
      end
    elseif name == 'copy' and copy_target_db(args) then
      if reply == 1 then index_in_other_db(copy_target_db(args), keys[2], argv, before) end
    elseif name == 'del' or name == 'unlink' then
      -- Whatever they found is gone now: its entry goes, without an event.
      local unindexed = {}
      for index, key in ipairs(keys) do
        if indexed[index] then unindexed[#unindexed + 1] = key end
      end
      unindex_keys(unindexed)
    else
      for index, key in ipairs(keys) do
        if lists_by_key[index] then sync_index(key, indexed[index] or false) end
      end
    end
  end
  -- (After MOVE / COPY ... DB in the other database: the proxy takes its counters from every one.)
  if counter then
    for op, n in pairs(pushed_by_op) do redis.pcall('HINCRBY', STATS, counter .. ':' .. op, n) end
  end
  return reply
end

-- FCALL notifylist_flush 0 <secret> <databases> FLUSHDB|FLUSHALL [ASYNC|SYNC]
-- Registrations are configuration, like function libraries: a flush through the proxy removes
-- every key (and with them the expiry index) but keeps the registrations, and the deployment's
-- secret in database 0 if the caller may read it (else the proxies write it back).
local FLUSHES = { flushdb = true, flushall = true }
local function notifylist_flush(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local databases = tonumber(argv[2])
  local args = {}
  for i = 3, #argv do args[#args + 1] = argv[i] end
  if #args == 0 or #args > 2 or not FLUSHES[string.lower(args[1])] then
    return redis.error_reply('ERR notifylist: notifylist_flush runs FLUSHDB and FLUSHALL only')
  end
  local all = string.lower(args[1]) == 'flushall'
  local saved = {}
  local secret_key, secret = PREFIX .. 'secret', nil
  if all then
    for db = 0, databases - 1 do
      redis.call('SELECT', db)
      saved[db] = redis.call('HGETALL', REGISTRY)
      if db == 0 then secret = redis.pcall('GET', secret_key) end
    end
  else
    saved[-1] = redis.call('HGETALL', REGISTRY)
    secret = redis.pcall('GET', secret_key)
  end
  local reply = redis.pcall(unpack(args))
  if is_error(reply) then return reply end
  for db, fields in pairs(saved) do
    if #fields > 0 then
      if db >= 0 then redis.call('SELECT', db) end
      local restored = pcall_in_slices('HSET', REGISTRY, fields, 1)
      if is_error(restored) then return restored end
      ensure_targets()
    end
  end
  if type(secret) == 'string' then
    if all then redis.call('SELECT', 0) end
    redis.pcall('SET', secret_key, secret)
  end
  return reply
end

-- FCALL notifylist_swapdb 0 <secret> SWAPDB <index1> <index2>: registrations are per database and
-- move with the data; the change message, published when the swap really happens (also at EXEC),
-- makes every proxy reload its registry.
local function notifylist_swapdb(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  if #argv ~= 4 or string.lower(argv[2]) ~= 'swapdb' then
    return redis.error_reply('ERR notifylist: notifylist_swapdb runs SWAPDB only')
  end
  local reply = redis.pcall(argv[2], argv[3], argv[4])
  if not is_error(reply) then redis.call('PUBLISH', CHANGES, 'reload') end
  return reply
end

-- Event lists of this database that hold another type (their keys' expirations are held back).
local function blocked_targets()
  local fields = redis.call('HGETALL', TARGETS)
  local count = 0
  for i = 1, #fields, 2 do
    if target_count(fields[i], fields[i + 1]) and other_type(fields[i]) then count = count + 1 end
  end
  return count
end

-- The reaper lease (the proxy that runs backfills and reaps first): <holder>|<until ms>|<tag>, the
-- tag over (holder, until). A value set by hand is no lease; a copied one runs out at its `until`.
local function lease_value(holder, until_ms)
  local text = string.format('%d', until_ms)
  return holder .. '|' .. text .. '|' .. tag('lease', holder, text)
end

local function lease_holder(value, now)
  if type(value) ~= 'string' then return nil end
  local holder, until_ms, made = string.match(value, '^(.*)|(%d+)|(%x+)$')
  if not holder or made ~= tag('lease', holder, until_ms) or tonumber(until_ms) < now then return nil end
  return holder
end

-- FCALL notifylist_info 0 <secret> <databases> <n> <n proxy state lines> <the client's arguments...>
-- INFO-style text: this proxy's state (name:value lines, from the proxy) and, per database, what
-- Redis holds.
local function notifylist_info(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local databases, fields = tonumber(argv[2]), tonumber(argv[3])
  if #argv ~= 3 + fields then return arity_error('notifylist.info') end
  local lines = { '# notifylist' }
  for i = 4, 3 + fields do lines[#lines + 1] = argv[i] end
  local now = now_ms()
  for db = 0, databases - 1 do
    redis.call('SELECT', db)
    local registrations = redis.call('HLEN', REGISTRY)
    local indexed = redis.call('ZCARD', EXPIRY)
    local events = tonumber(redis.call('HGET', STATS, 'events')) or 0
    if db == 0 then
      local holder = lease_holder(redis.call('GET', PREFIX .. 'reaper'), now)
      lines[#lines + 1] = 'reaper_lease_holder:' .. (holder or '')
    end
    if registrations > 0 or indexed > 0 or events > 0 then
      local overdue = redis.call('ZCOUNT', EXPIRY, '-inf', '(' .. now)
      lines[#lines + 1] = string.format('db%d:registrations=%d,indexed=%d,overdue=%d,events=%d,blocked=%d',
        db, registrations, indexed, overdue, events, blocked_targets())
    end
  end
  return table.concat(lines, '\r\n') .. '\r\n'
end

-- FCALL notifylist_expired <numkeys> <keys...> <secret> <candidates...> [expired] [lags]
-- Reports keys whose indexed deadline has passed (from the keyevent subscription, which passes
-- `expired`: Redis published `expired` for these keys, or from the reaper). A key whose event list
-- holds another type is held back (its entry stays, untouched) until the list is fixed; the other
-- keys are reported. Returns { events pushed, entries left unchanged (held back or not yet due on
-- Redis's clock), [with `lags`: per key reported, ms from its deadline to its event,] then per
-- event list held back: its name and the type it holds }.
local function notifylist_expired(keys, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local lists_by_key, after = verified_lists(argv, 2, #keys)
  local expired_by_redis = argv[after] == 'expired'
  local lags = nil
  if argv[expired_by_redis and after + 1 or after] == 'lags' then lags = {} end
  local refused = check_registry_read()
  if refused then return refused end
  drop_targets(keys, lists_by_key)
  if next(lists_by_key) ~= nil then
    refused = check_internal_access()
    if refused then return refused end
  end
  local held, blocked = {}, {}
  for _, lists in pairs(lists_by_key) do
    for _, list in ipairs(lists) do
      if held[list] == nil then
        local problem = list_problem(list)
        if type(problem) == 'table' then return problem end
        held[list] = problem or false
        if problem then
          blocked[#blocked + 1] = list
          blocked[#blocked + 1] = problem
        end
      end
    end
  end
  for _, key in ipairs(keys) do
    refused = check_key_reads(key)
    if refused then return refused end
  end
  local now = now_ms()
  local pushed, unchanged = 0, 0
  for index, key in ipairs(keys) do
    local lists = lists_by_key[index] or {}
    local hold = false
    for _, list in ipairs(lists) do
      if held[list] then hold = true end
    end
    if hold then
      if redis.call('ZSCORE', EXPIRY, key) then unchanged = unchanged + 1 end
    else
      local events, _, same, deadline = settle(key, lists, now, nil, expired_by_redis)
      pushed = pushed + events
      if same then unchanged = unchanged + 1 end
      if lags and events > 0 then lags[#lags + 1] = now - deadline end
    end
  end
  local reply = { pushed, unchanged }
  if lags then reply[3] = lags end
  for _, item in ipairs(blocked) do reply[#reply + 1] = item end
  return reply
end

-- FCALL notifylist_backfill 0 <secret> <count> [<pattern> ...]: bounded SCAN steps of pending
-- backfills: index the keys that match a pending pattern, have a TTL and no entry yet. A step costs
-- what it scans (about min(DBSIZE, count) per SCAN call, a budget of 4 x count per call): patterns
-- are picked without reading them all, and a small database lets one call finish many patterns.
-- The patterns given are suspended (their owners may no longer read what they match, the proxy
-- checks): they are not backfilled, since the SCAN runs under the proxy's login. Returns the
-- backfills still pending.
local function notifylist_backfill(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  ensure_targets()
  local count = tonumber(argv[2])
  local suspended = {}
  for i = 3, #argv do suspended[argv[i]] = true end
  local budget = 4 * count
  local per_scan = math.min(redis.call('DBSIZE'), count) + 1
  local pending = redis.call('HLEN', BACKFILL)
  local earliest = nil
  while pending > 0 and budget > 0 do
    local picked = redis.call('HRANDFIELD', BACKFILL, 1, 'WITHVALUES')
    local pattern, cursor = picked[1], picked[2]
    if not registered_list(pattern) or suspended[pattern] then
      redis.call('HDEL', BACKFILL, pattern)
      pending = pending - 1
    else
      local step = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
      budget = budget - per_scan
      for _, key in ipairs(step[2]) do
        if not starts_with(key, PREFIX) and not target_count(key, redis.call('HGET', TARGETS, key)) then
          local deadline = redis.call('PEXPIRETIME', key)
          if deadline > 0 and redis.call('ZADD', EXPIRY, 'NX', deadline, key) == 1 then
            redis.call('HSET', TAGS, key, expiry_tag(key, deadline))
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

-- Registration (NOTIFYLIST.SET / DEL) runs on the client's own connection, as its user. The proxy
-- passes who that user is and whether it may read every key the pattern can match (it asks Redis
-- for the user's rules: ACL GETUSER); `refusal` is '' or the error to return. Here the user must
-- also be able to push to the event list and, to replace or remove a registration, to push to the
-- list it points at now: nobody can reroute or drop events they could not have received.
local function check_registration(pattern, refusal, old_list)
  if refusal ~= '' then return redis.error_reply(refusal) end
  if old_list and not redis.acl_check_cmd('rpush', old_list, 'x') then
    return no_permission('change the registration of ' .. pattern .. ': it may not RPUSH to its event list ' .. old_list)
  end
  return nil
end

-- FCALL notifylist_set 0 <secret> <owner> <refusal> <pattern> <list>
local function notifylist_set(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  if #argv ~= 5 then return arity_error('notifylist.set') end
  local owner, refusal, pattern, list = argv[2], argv[3], argv[4], argv[5]
  if starts_with(list, PREFIX) then
    return redis.error_reply('ERR notifylist: the list name must not start with the internal prefix ' .. PREFIX)
  end
  if not redis.acl_check_cmd('hset', REGISTRY, pattern, list) then
    return no_permission('write ' .. REGISTRY)
  end
  local old_list = registered_list(pattern)
  local refused = check_registration(pattern, refusal, old_list ~= list and old_list or nil)
  if refused then return refused end
  if not redis.acl_check_cmd('rpush', list, 'x') then
    return no_permission('RPUSH to the event list ' .. list)
  end
  track_target(old_list, list)
  redis.call('HSET', REGISTRY, pattern, registry_value(pattern, list, owner))
  -- Keys that already match and already have a TTL get indexed in the background.
  redis.call('HSET', BACKFILL, pattern, '0')
  redis.call('PUBLISH', CHANGES, string.format('set %d:%d:', #pattern, #list) .. pattern .. list)
  return redis.status_reply('OK')
end

-- FCALL notifylist_del 0 <secret> <owner> <refusal> <pattern>
local function notifylist_del(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  if #argv ~= 4 then return arity_error('notifylist.del') end
  local pattern = argv[4]
  if not redis.acl_check_cmd('hdel', REGISTRY, pattern) then
    return no_permission('write ' .. REGISTRY)
  end
  local old_list = registered_list(pattern)
  local refused = check_registration(pattern, argv[3], old_list)
  if refused then return refused end
  track_target(old_list, nil)
  local removed = redis.call('HDEL', REGISTRY, pattern)
  redis.call('HDEL', BACKFILL, pattern)
  if removed == 1 then redis.call('PUBLISH', CHANGES, 'del ' .. pattern) end
  -- A value written by hand is removed too, but it never was a registration.
  if not old_list then return 0 end
  return removed
end

-- FCALL_RO notifylist_list 0 <secret>: pattern, list, ... of this database's registrations.
local function notifylist_list(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  if #argv ~= 1 then return arity_error('notifylist.list') end
  if not redis.acl_check_cmd('hgetall', REGISTRY) then
    return no_permission('read ' .. REGISTRY)
  end
  local fields = redis.call('HGETALL', REGISTRY)
  local reply = {}
  for i = 1, #fields, 2 do
    local list = registration(fields[i], fields[i + 1])
    if list then
      reply[#reply + 1] = fields[i]
      reply[#reply + 1] = list
    end
  end
  return reply
end

-- FCALL notifylist_lease 1 <lease key> <secret> <holder id> <ttl ms>: take or renew the lease.
local function notifylist_lease(keys, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local now = now_ms()
  local holder = lease_holder(redis.call('GET', keys[1]), now)
  if holder == nil or holder == argv[2] then
    redis.call('SET', keys[1], lease_value(argv[2], now + tonumber(argv[3])), 'PX', argv[3])
    return 1
  end
  return 0
end

-- FCALL notifylist_release 1 <lease key> <secret> <holder id>
local function notifylist_release(keys, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  if lease_holder(redis.call('GET', keys[1]), now_ms()) == argv[2] then
    redis.call('DEL', keys[1])
    return 1
  end
  return 0
end

-- FCALL notifylist_migrate 0 <secret>: once, when a proxy replaces a library older than version 3
-- (before tags), the entries that library made in this database get their tags (registrations
-- get the owner '', which stands for the proxy's own user). Returns the entries tagged.
local function notifylist_migrate(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local tagged = 0
  local fields = redis.call('HGETALL', REGISTRY)
  for i = 1, #fields, 2 do
    if not registration(fields[i], fields[i + 1]) then
      redis.call('HSET', REGISTRY, fields[i], registry_value(fields[i], fields[i + 1], ''))
      tagged = tagged + 1
    end
  end
  redis.call('DEL', TARGETS)
  ensure_targets()
  local entries = redis.call('ZRANGE', EXPIRY, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local key, deadline = entries[i], tonumber(entries[i + 1])
    if not made_by_library(key, deadline) then
      redis.call('HSET', TAGS, key, expiry_tag(key, deadline))
      tagged = tagged + 1
    end
  end
  return tagged
end

-- FCALL notifylist_take_counts 0 <secret> <databases> <proxy counter> <op...>: the events of each op
-- that the proxy's writes pushed (see notifylist_write), summed over every database, and removed:
-- atomically, so that each is counted by the proxy once.
local function notifylist_take_counts(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local databases, counter = tonumber(argv[2]), argv[3]
  local fields, totals = {}, {}
  for i = 4, #argv do
    fields[#fields + 1] = counter .. ':' .. argv[i]
    totals[#totals + 1] = 0
  end
  if #fields == 0 then return totals end
  for db = 0, databases - 1 do
    redis.call('SELECT', db)
    local values = redis.call('HMGET', STATS, unpack(fields))
    local any = false
    for i, value in ipairs(values) do
      if value then
        totals[i] = totals[i] + tonumber(value)
        any = true
      end
    end
    if any then redis.call('HDEL', STATS, unpack(fields)) end
  end
  return totals
end

-- FCALL_RO notifylist_version 0: which library this is (proxies never replace a newer one).
local function notifylist_version()
  return LIBRARY_VERSION
end

-- FCALL_RO notifylist_deployment 0: the SHA1 of the secret this library was loaded with (a proxy
-- with another secret loads its own).
local function notifylist_deployment()
  return SECRET_HASH
end

local function write_denyoom(keys, argv)
  return notifylist_write(keys, argv, DENYOOM_WRITES)
end

local function write_others(keys, argv)
  return notifylist_write(keys, argv, OTHER_WRITES)
end

-- Redis refuses some commands above maxmemory (denyoom: SET, COPY, RESTORE, ...) and not others
-- (DEL, EXPIRE, FLUSHALL, SWAPDB, ...): each runs through a function that is refused exactly then.
local ALWAYS = { 'no-writes', 'allow-stale', 'allow-oom' }
redis.register_function('notifylist_write', write_denyoom)
redis.register_function{ function_name = 'notifylist_write_allow_oom', callback = write_others, flags = { 'allow-oom' } }
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
redis.register_function('notifylist_migrate', notifylist_migrate)
redis.register_function('notifylist_take_counts', notifylist_take_counts)
redis.register_function{ function_name = 'notifylist_version', callback = notifylist_version, flags = ALWAYS }
redis.register_function{ function_name = 'notifylist_deployment', callback = notifylist_deployment, flags = ALWAYS }
