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
--                             (the proxy adds them to its metrics and takes them back out; they
--                             join `events` then: one HINCRBY per write)
--   __PREFIX__backfill  hash  pattern -> SCAN cursor of its pending backfill
--   __PREFIX__targets   hash  list -> tagged number of registrations pointing at it and their
--                             target options (derived from the registry: rebuilt when missing).
--                             Event targets produce no events of their own and are never indexed:
--                             a write to one runs plainly.
--   __PREFIX__values    hash  key -> tagged copy of the value of an indexed string key, for
--                             registrations WITH value: the `expired` event carries it
--   __PREFIX__stats also: dropped -> events MAXLEN dropped in this database; dropped:<target> ->
--                             those of one target.
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
local LIBRARY_VERSION = 7

local PREFIX = '__PREFIX__'
local REGISTRY = PREFIX .. 'registry'
local EXPIRY = PREFIX .. 'expiry'
local TAGS = PREFIX .. 'tags'
local STATS = PREFIX .. 'stats'
local BACKFILL = PREFIX .. 'backfill'
local TARGETS = PREFIX .. 'targets'
local VALUES = PREFIX .. 'values'
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
local reply_marker = nil -- (made with the secret: see marked)
local function from_proxy(secret)
  if proven_secret ~= nil and secret == proven_secret then return true end
  if type(secret) ~= 'string' or redis.sha1hex(secret) ~= SECRET_HASH then return false end
  proven_secret = secret
  tag_inner = redis.sha1hex('notifylist tag inner ' .. secret)
  tag_outer = redis.sha1hex('notifylist tag outer ' .. secret)
  reply_marker = nil
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

-- Replies Lua cannot give as Redis does (a null array, an integer above 2^53) go to the proxy as
-- a RESP3 big number holding this marker and what to reply: src/proxy/reply-markers.ts.
local function marked(payload)
  reply_marker = reply_marker or ('\0notifylist-reply:' .. tag('reply marker') .. ':')
  return { big_number = reply_marker .. payload }
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

-- ---- Events and registrations ----

-- Redis's keyevent names by notify-keyspace-events class (src/notify.c; the class of each
-- notifyKeyspaceEvent call in src/t_*.c, db.c, expire.c, bitops.c, hyperloglog.c, geo.c, sort.c,
-- cluster.c): a registration's EVENTS names events and classes.
local EVENT_CLASSES = {
  ['@generic'] = { 'del', 'expire', 'persist', 'rename_from', 'rename_to', 'move_from', 'move_to', 'copy_to',
    'restore' },
  ['@string'] = { 'set', 'setrange', 'incrby', 'incrbyfloat', 'append', 'setbit', 'pfadd' },
  ['@list'] = { 'lpush', 'rpush', 'lpop', 'rpop', 'linsert', 'lset', 'lrem', 'ltrim', 'sortstore' },
  ['@hash'] = { 'hset', 'hdel', 'hincrby', 'hincrbyfloat' },
  ['@set'] = { 'sadd', 'srem', 'spop', 'sinterstore', 'sunionstore', 'sdiffstore' },
  ['@zset'] = { 'zadd', 'zincr', 'zrem', 'zremrangebyscore', 'zremrangebyrank', 'zremrangebylex', 'zpopmin',
    'zpopmax', 'zunionstore', 'zinterstore', 'zdiffstore', 'zrangestore', 'georadiusstore', 'geosearchstore' },
  ['@stream'] = { 'xadd', 'xtrim', 'xdel', 'xsetid', 'xgroup-create', 'xgroup-createconsumer',
    'xgroup-delconsumer', 'xgroup-destroy', 'xgroup-setid' },
  ['@expired'] = { 'expired' },
  ['@evicted'] = { 'evicted' },
}
-- @all is Redis's A (every class above); `new` (Redis's n) is an event of its own, not in @all.
-- (Made on first use: a library's top level may not iterate, Redis loads it without `pairs`.)
local EVENT_NAMES = nil
local function event_names()
  if EVENT_NAMES then return EVENT_NAMES end
  local names, all = { new = true }, {}
  for _, class in ipairs({ '@generic', '@string', '@list', '@hash', '@set', '@zset', '@stream', '@expired', '@evicted' }) do
    for _, name in ipairs(EVENT_CLASSES[class]) do
      names[name] = true
      all[#all + 1] = name
    end
  end
  EVENT_CLASSES['@all'] = all
  EVENT_NAMES = names
  return names
end

-- A registration without EVENTS: the earlier module's two events.
local DEFAULT_EVENTS = 'set expired'
local DEFAULT_FILTER = { set = true, expired = true }

-- A target's options (NOTIFYLIST.SET ... TARGET list|stream MAXLEN <n> WITH <field> ...), as
-- text: '' (a list without bound or extra fields: the default), else its parts in this order:
-- 'stream', 'maxlen=<n>', 'with=<fields, comma-separated, in WITH_FIELDS order>'. Every
-- registration pointing at one target has the same options (notifylist_set refuses others).
-- As a table, made once per text: { text, stream = bool, maxlen = n or nil, with = { field =
-- true } or nil, with_list = { fields in order } }.
local WITH_FIELDS = { 'ts', 'db', 'ttl', 'value' }
local DEFAULT_OPTIONS = { text = '', stream = false }
local options_tables = { [''] = DEFAULT_OPTIONS }
local function target_options(text)
  local options = options_tables[text]
  if options then return options end
  local maxlen = string.match(text, 'maxlen=(%d+)')
  options = { text = text, stream = string.find(text, '^stream') ~= nil, maxlen = maxlen and tonumber(maxlen) or nil }
  local with = string.match(text, 'with=([%a,]+)')
  if with then
    options.with, options.with_list = {}, {}
    for field in string.gmatch(with, '[^,]+') do
      options.with[field] = true
      options.with_list[#options.with_list + 1] = field
    end
  end
  options_tables[text] = options
  return options
end

-- A filter (event name -> true) also holds its target's options under this key (a table: no
-- event name can be it), unless they are the default.
local OPTIONS = {}
local function options_of(filter)
  return filter[OPTIONS] or DEFAULT_OPTIONS
end

-- The filter of an events text (names and classes, space-separated) under target options, made
-- once per (text, options).
local filters = { [DEFAULT_EVENTS .. '|'] = DEFAULT_FILTER }
local function events_filter(text, options_text)
  options_text = options_text or ''
  local filter = filters[text .. '|' .. options_text]
  if filter then return filter end
  event_names()
  filter = {}
  for word in string.gmatch(text, '%S+') do
    for _, name in ipairs(EVENT_CLASSES[word] or { word }) do filter[name] = true end
  end
  if options_text ~= '' then filter[OPTIONS] = target_options(options_text) end
  filters[text .. '|' .. options_text] = filter
  return filter
end

-- The events text of NOTIFYLIST.SET's EVENTS words (lowercased, duplicates dropped, in the
-- given order), or nil and the first word that names no event or class.
local function events_text(words)
  local seen, text = {}, {}
  for _, word in ipairs(words) do
    local name = string.lower(word)
    if not event_names()[name] and not EVENT_CLASSES[name] then return nil, word end
    if not seen[name] then
      seen[name] = true
      text[#text + 1] = name
    end
  end
  return table.concat(text, ' ')
end

-- A registry value: <tag><owner length>:<owner><list> (the default events and options: the tag
-- over (pattern, list, owner)), or <tag>e<events length>:<events><owner length>:<owner><list> (the
-- tag over (pattern, list, owner, events)), or with target options <tag>[e...]o<options
-- length>:<options><owner length>:<owner><list> (the tag over (pattern, list, owner, events,
-- options)). The owner is the ACL user who registered it ('' for registrations older than
-- owners); the proxy checks its rights for what it does for the registration under its own login.
local function registration_tag(pattern, list, owner, events, options)
  if options ~= '' then return tag('registration', pattern, list, owner, events, options) end
  if events == DEFAULT_EVENTS then return tag('registration', pattern, list, owner) end
  return tag('registration', pattern, list, owner, events)
end

local function registry_value(pattern, list, owner, events, options)
  local value = registration_tag(pattern, list, owner, events, options)
  if events ~= DEFAULT_EVENTS then value = value .. 'e' .. #events .. ':' .. events end
  if options ~= '' then value = value .. 'o' .. #options .. ':' .. options end
  return value .. #owner .. ':' .. owner .. list
end

-- The list, owner, events filter, events text and all of them as one (remembered) table of a
-- registry value the library made for `pattern`, else nil (no value, or one written by hand). Checked values are remembered (one
-- lookup next time; bounded).
local checked_values, checked_count = {}, 0
-- The lists table of a key's first list (filter -> list -> table): shared by every call, as most
-- writes have one candidate; its contents are fixed by (list, filter), and filters are the shared
-- tables of events_filter. Emptied with checked_values.
local first_lists = {}
-- The field <letter><length>:<text> of `value` at `at` (or `default` if there is none), and what
-- follows it.
local function optional_field(value, letter, at, default)
  local digits = string.match(value, '^' .. letter .. '(%d+):', at)
  if not digits then return default, at end
  local from = at + 2 + #digits
  local text = string.sub(value, from, from + tonumber(digits) - 1)
  return text, from + #text
end

local function registration(pattern, value)
  if not value then return nil end
  local known = checked_values[value]
  if known and known.pattern == pattern then return known.list, known.owner, known.filter, known.events, known end
  local events, at = optional_field(value, 'e', 41, DEFAULT_EVENTS)
  local options
  options, at = optional_field(value, 'o', at, '')
  local digits = string.match(value, '^(%d+):', at)
  if not digits then return nil end
  local owner_from = at + #digits + 1
  local owner_to = owner_from + tonumber(digits) - 1
  if owner_to > #value then return nil end
  local owner, list = string.sub(value, owner_from, owner_to), string.sub(value, owner_to + 1)
  if string.sub(value, 1, 40) ~= registration_tag(pattern, list, owner, events, options) then return nil end
  if checked_count >= 10000 then checked_values, checked_count, first_lists = {}, 0, {} end
  local filter = events_filter(events, options)
  known = { pattern = pattern, list = list, owner = owner, filter = filter, events = events, options = options }
  checked_values[value] = known
  checked_count = checked_count + 1
  return list, owner, filter, events, known
end

-- The list of `pattern` in this database's registry (nil: not registered), its owner, its events
-- filter and events text.
local function registered_list(pattern)
  return registration(pattern, redis.call('HGET', REGISTRY, pattern))
end

-- ARGV[first] = number of candidate triples (`<n>`, or `<n>/<client protocol>/<proxy counter>` from
-- notifylist_write's proxy, which counts its events), then (key index, pattern, list) triples; the key
-- index may be a range `first-last` (consecutive keys with the same candidate, as in a large MSET).
-- Returns: per key index, the verified lists (deduplicated, in first-seen order); index after.
-- Keys with the same lists share one table (so a large MSET makes a few tables, not one per key):
-- callers must not modify them. Indexes above `key_count` are ignored (a direct FCALL with a
-- huge range must not keep Redis busy).
-- Where the candidates start in the ARGV of notifylist_write (after the secret).
local CANDIDATES_AT = 2
local NO_LISTS = {} -- never modified
-- t[key], a table made on first use.
local function subtable(t, key)
  local sub = t[key]
  if not sub then
    sub = {}
    t[key] = sub
  end
  return sub
end
-- Each lists table maps its list names (array part) to their filters (list name -> the events
-- filter: the union of the filters of the key's registrations that point at the list).
local unions = {}
local function union(a, b)
  if a == b then return a end
  local by_b = subtable(unions, a)
  local both = by_b[b]
  if not both then
    -- (Values copied: a filter's OPTIONS entry is its target's options, not `true`.)
    both = {}
    for name, value in pairs(a) do both[name] = value end
    for name, value in pairs(b) do both[name] = value end
    by_b[b] = both
  end
  return both
end

-- `lists` with `list` added under `filter`: one shared table per combination (the rare second
-- filter for the same list and lists is not shared). `grown`: lists table -> list -> that table.
local function with(grown, lists, list, filter)
  local by_list = subtable(grown, lists)
  local wanted = lists[list] and union(lists[list], filter) or filter
  local more = by_list[list]
  if more and more[list] == wanted then return more end
  more = {}
  for n, name in ipairs(lists) do
    more[n] = name
    more[name] = lists[name]
  end
  if not more[list] then more[#more + 1] = list end
  more[list] = wanted
  by_list[list] = by_list[list] or more
  return more
end

-- Also returns the refusal of a user who may not read the registry (the read itself tells:
-- nothing has been read or written yet).
local function verified_lists(argv, first, key_count)
  local count = tonumber(string.match(argv[first], '^%d+'))
  local current = count > 1 and {} or NO_LISTS -- (read only with one candidate)
  local lists_by_key = {}
  local grown = nil
  for i = 0, count - 1 do
    local base = first + 1 + 3 * i
    local indexes, pattern, list = argv[base], argv[base + 1], argv[base + 2]
    local registered = current[pattern]
    if registered == nil then
      local value = redis.pcall('HGET', REGISTRY, pattern)
      if type(value) == 'table' then return {}, first + 1 + 3 * count, redis.error_reply('NOPERM notifylist: this user has no permissions to read ' .. REGISTRY) end
      local _, _, _, _, known = registration(pattern, value)
      registered = known or false
      if count > 1 then current[pattern] = registered end
    end
    if registered and registered.list == list then
      local filter = registered.filter
      local from, to = tonumber(indexes), nil
      if not from then
        from, to = string.match(indexes, '^(%d+)-(%d+)$')
        from = tonumber(from)
      end
      to = math.min(tonumber(to) or from, key_count)
      local by_list = subtable(first_lists, filter)
      local alone = by_list[list]
      if not alone then
        alone = { list, [list] = filter }
        by_list[list] = alone
      end
      for key_index = from, to do
        local lists = lists_by_key[key_index]
        if lists == nil then
          lists_by_key[key_index] = alone -- the common case: the key's first list
        elseif lists[list] ~= filter then
          grown = grown or {}
          lists_by_key[key_index] = with(grown, lists, list, filter)
        end
      end
    end
  end
  return lists_by_key, first + 1 + 3 * count
end

-- Does some list of `lists` carry values (WITH value)?
-- (Remembered in the lists table under a key no list name can be: the tables are shared by keys.)
local CARRIES_VALUES = {}
local function wants_values(lists)
  if not lists then return false end
  local known = lists[CARRIES_VALUES]
  if known ~= nil then return known end
  known = false
  for _, list in ipairs(lists) do
    local with = options_of(lists[list]).with
    if with and with.value then known = true end
  end
  if lists ~= NO_LISTS then lists[CARRIES_VALUES] = known end
  return known
end

-- Does some list of `lists` take `op`?
local function wants(lists, op)
  if not lists then return false end
  for n = 1, #lists do
    if lists[lists[n]][op] then return true end
  end
  return false
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

-- A TARGETS value: <count>:<tag over (list, count)>, or with target options
-- <count>:<options>:<tag over (list, count, options)>.
local function target_value(list, count, options)
  local text = string.format('%d', count)
  if options == '' then return text .. ':' .. tag('target', list, text) end
  return text .. ':' .. options .. ':' .. tag('target', list, text, options)
end

-- The count and options of a TARGETS value the library made for `list`, else nil.
local function target_count(list, value)
  if not value then return nil end
  local count, made = string.match(value, '^(%d+):(%x+)$')
  if count then
    if made ~= tag('target', list, count) then return nil end
    return tonumber(count), ''
  end
  local options
  count, options, made = string.match(value, '^(%d+):([^:]*):(%x+)$')
  if not count or made ~= tag('target', list, count, options) then return nil end
  return tonumber(count), options
end

-- TARGETS is derived from the registry: rebuilt when missing while registrations exist (after a
-- flush, or with a registry written by an older library).
local function ensure_targets()
  if redis.call('TYPE', TARGETS)['ok'] ~= 'none' then return end
  local fields = redis.call('HGETALL', REGISTRY)
  local counts, options, lists = {}, {}, {}
  for i = 1, #fields, 2 do
    local list, _, _, _, known = registration(fields[i], fields[i + 1])
    if list then
      if not counts[list] then lists[#lists + 1] = list end
      counts[list] = (counts[list] or 0) + 1
      options[list] = known.options
    end
  end
  for _, list in ipairs(lists) do redis.call('HSET', TARGETS, list, target_value(list, counts[list], options[list])) end
end

-- Adds `delta` to the number of registrations pointing at `list`, whose options become `options`.
local function count_target(list, delta, options)
  local count = (target_count(list, redis.call('HGET', TARGETS, list)) or 0) + delta
  if count > 0 then redis.call('HSET', TARGETS, list, target_value(list, count, options)) else redis.call('HDEL', TARGETS, list) end
end

-- Keeps TARGETS true when `pattern`, registered to `old` (nil: not registered), is about to point
-- at `list` with `options` (nil: about to be unregistered). Call before the registry changes.
local function track_target(old, list, options)
  ensure_targets()
  if old == list then
    if list then count_target(list, 0, options) end
    return
  end
  if old then
    local _, old_options = target_count(old, redis.call('HGET', TARGETS, old))
    count_target(old, -1, old_options or '')
  end
  if list then count_target(list, 1, options) end
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
  if #keys == 1 then
    local value = redis.pcall('HGET', TARGETS, keys[1])
    if type(value) == 'string' and target_count(keys[1], value) then lists_by_key[1] = nil end
    return
  end
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
-- Refuses, before anything is written, a user who may not run HGET, HSET and HDEL on `hash`.
local function check_hash_rights(hash)
  for _, command in ipairs({ 'hget', 'hset', 'hdel' }) do
    if not redis.acl_check_cmd(command, hash, 'x', 'x') then return no_permission('run ' .. command .. ' on ' .. hash) end
  end
  return nil
end

local function check_internal_access()
  for _, command in ipairs(INDEX_READS) do
    if not redis.acl_check_cmd(command, EXPIRY, 'x', 'x') then return no_permission('run ' .. command .. ' on ' .. EXPIRY) end
  end
  if not redis.acl_check_cmd('zadd', EXPIRY, '0', 'x') then return no_permission('run zadd on ' .. EXPIRY) end
  local refused = check_hash_rights(TAGS)
  if refused then return refused end
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

-- The type an event target holds if it is not its kind (nil: a list, or a stream for TARGET
-- stream, or no key yet).
local function other_type(list, options)
  local kind = redis.call('TYPE', list)['ok']
  if kind ~= 'none' and kind ~= (options.stream and 'stream' or 'list') then return kind end
  return nil
end

-- What the library runs on an event target: refused up front (a NOPERM error), else nil.
-- (`typed`: TYPE is known to be allowed.)
local function target_permission(list, options, typed)
  typed = typed or redis.acl_check_cmd('type', list)
  if options.stream then
    if not typed or not redis.acl_check_cmd('xadd', list, 'MAXLEN', '~', '1', '*', 'k', 'v') or (options.maxlen and not redis.acl_check_cmd('xlen', list)) then
      return no_permission('XADD to the event stream ' .. list)
    end
  elseif not typed or not redis.acl_check_cmd('rpush', list, 'x') then
    return no_permission('RPUSH to the event list ' .. list)
  elseif options.maxlen and not redis.acl_check_cmd('ltrim', list, '0', '-1') then
    return no_permission('LTRIM the event list ' .. list .. ' (it has a MAXLEN)')
  end
  return nil
end

-- An event target's type: nil if it can take events, else the type it holds (or a NOPERM error).
-- (TYPE's own refusal stands for its permission check.)
local function list_problem(list, options)
  local kind = redis.pcall('TYPE', list)['ok']
  if not kind then return target_permission(list, options) end
  local refused = target_permission(list, options, true)
  if refused then return refused end
  if kind ~= 'none' and kind ~= (options.stream and 'stream' or 'list') then return kind end
  return nil
end

-- The lists (with their filters) of a lists table that can take events now: after the write,
-- where nothing may refuse any more, one that cannot is skipped.
local function lists_taking_events(lists)
  local usable = {}
  for _, list in ipairs(lists or NO_LISTS) do
    if list_problem(list, options_of(lists[list])) == nil then
      usable[#usable + 1] = list
      usable[list] = lists[list]
    end
  end
  return usable
end

-- Writes whose events the library knows (REDIS-FACTS.md): each fires `set` per written key.
local SET_FAMILY = { set = true, setnx = true, setex = true, psetex = true, getset = true, mset = true, msetnx = true }
-- Writes that leave their keys without a deadline when they write (MSET leaves no TTL, DEL removes
-- the key; SET without EX, PX, EXAT, PXAT or KEEPTTL: see set_options): the library reads nothing
-- of the written keys after them, and a key without an index entry needs nothing of the index.
local UNTIMED = { setnx = true, getset = true, mset = true, msetnx = true, del = true, unlink = true }
-- Multi-key commands whose written keys stay lists or go: one of them may be an event list of
-- another (every other command writing an event list of one of its keys is refused: it could
-- change the list's type before the events are pushed).
local LIST_SAFE = { rpoplpush = true, lmove = true, lmpop = true, del = true, unlink = true, move = true,
  blmove = true, brpoplpush = true, blmpop = true, blpop = true, brpop = true }

-- Refuses (before anything is written) what would make the function fail halfway: an event
-- list that holds another type (or that the command itself would overwrite before its events are
-- pushed), or an ACL user who may not run one of the commands the library runs for a matching key
-- (its own redis.call would otherwise abort with a script error).
-- `reads_after`: the library reads the written keys after the command. `index_free`: it runs
-- nothing on the index for this call (one key, untimed, without an entry: see UNTIMED), so only
-- counting the events is checked of the internal rights.
local function check_targets(keys, lists_by_key, name, reads_after, index_free)
  if next(lists_by_key) == nil then return nil end
  local refused = nil
  if not index_free then
    refused = check_internal_access()
  elseif not redis.acl_check_cmd('hincrby', STATS, 'events', '1') then
    refused = no_permission('run hincrby on ' .. STATS)
  end
  if refused then return refused end
  -- (One key: its lists table is every list, each once.)
  local lists_seen, tables_seen = nil, nil
  if #keys > 1 then lists_seen, tables_seen = {}, {} end
  for index, lists in pairs(lists_by_key) do
    if reads_after then
      refused = check_key_reads(keys[index])
      if refused then return refused end
    end
    if wants_values(lists) then
      refused = check_hash_rights(VALUES)
      if refused then return refused end
    end
    if not (tables_seen and tables_seen[lists]) then
      if tables_seen then tables_seen[lists] = true end
      for _, list in ipairs(lists) do
        if not (lists_seen and lists_seen[list]) then
          if lists_seen then lists_seen[list] = true end
          local options = options_of(lists[list])
          local problem = list_problem(list, options)
          if type(problem) == 'table' then return problem end
          if options.with and index_free and not redis.acl_check_cmd('time') then return no_permission('run time') end
          if problem then
            return redis.error_reply('WRONGTYPE notifylist: the event ' .. (options.stream and 'stream ' or 'list ') .. list
              .. ' holds a ' .. problem .. ', not a ' .. (options.stream and 'stream' or 'list'))
          end
        end
      end
    end
  end
  if not LIST_SAFE[name] then
    lists_seen = lists_seen or lists_by_key[1] or NO_LISTS
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

-- The text arrays of the lists in `lists` that take `op` (made on first use; cached per op: the
-- first op of the call in by_table, others in by_op[op]).
local function arrays_of(events, lists, op)
  events.op = events.op or op
  local by_op = events.by_table
  if op ~= events.op then
    by_op = subtable(subtable(events, 'by_op'), op)
  end
  local arrays = by_op[lists]
  if arrays then return arrays end
  arrays = {}
  local by_list = events.lists
  for n = 1, #lists do
    local list = lists[n]
    local filter = lists[list]
    if filter[op] then
      local texts = by_list[list]
      if not texts then
        -- (A stream's events, and those of a target WITH fields, are their keys, with their ops in
        -- `ops`: made at push time.)
        local options = options_of(filter)
        texts = { n = 0, options = options, ops = (options.stream or options.with) and {} or nil }
        by_list[list] = texts
        by_list[#by_list + 1] = list
      end
      arrays[#arrays + 1] = texts
      if texts.ops then arrays.records = true end
    end
  end
  by_op[lists] = arrays
  return arrays
end

-- (`text`: the event for a plain list; streams and targets WITH fields take the key and op, their
-- events are made at push time.)
local function append_text(arrays, text, key, op)
  for n = 1, #arrays do
    local texts = arrays[n]
    local count = texts.n + 1
    texts.n = count
    if texts.ops then
      texts[count] = key
      texts.ops[count] = op
    else
      texts[count] = text
    end
  end
  return #arrays
end

local function add_event(events, key, op, lists)
  local arrays = arrays_of(events, lists, op)
  if #arrays == 0 then return end
  local added = append_text(arrays, event_text(key, op, events.plain), key, op)
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
      if lists ~= current then
        current = lists
        arrays = arrays_of(events, lists, op)
        single = #arrays == 1 and not arrays.records and arrays[1] or nil
      end
      local text = nil
      if #arrays > 0 then
        local key = keys[index]
        if plain then text = '{"key":"' .. key .. suffix else text = event_text(key, op) end
      end
      if not text then
        -- (no list of this key takes op)
      elseif single then
        local n = single.n + 1
        single.n = n
        single[n] = text
        count = count + 1
      else
        count = count + append_text(arrays, text, keys[index], op)
      end
    end
  end
  events.count = events.count + count
  events.ops[op] = (events.ops[op] or 0) + count
end

-- What a call knows beyond its arguments: the client's database (from the proxy, which follows
-- SELECT: a function cannot learn it; nil if not known), the largest value an event or a copy
-- carries (--max-value-bytes), and values written by SET-family commands (key -> value).
local DEFAULT_MAX_VALUE = 65536
local NOTHING_WRITTEN = {} -- never modified
-- `counter`: the calling proxy's (see push_events).
local context = { db = nil, max_value = DEFAULT_MAX_VALUE, written = NOTHING_WRITTEN, counter = nil }
-- From the candidates count of a call: `<n>[/<protocol>[b]/<counter>[/<db>/<max value bytes>]]`
-- (older proxies send up to the counter; the reaper's calls have no protocol nor counter).
-- Returns the protocol, `b` or '', and the counter. (The spec of the last call is remembered: a
-- proxy's writes send the same one.)
local function set_context(spec)
  local parsed = context.parsed
  if spec ~= context.spec then
    local protocol, blocking, counter, db, max_value = string.match(spec, '^%d+/([23]?)(b?)/([^/]*)/(%d*)/(%d*)$')
    if not protocol then
      protocol, blocking, counter = string.match(spec, '^%d+/([23]?)(b?)/(.+)$')
    end
    parsed = { protocol = protocol ~= '' and protocol or nil, blocking = blocking, counter = counter ~= '' and counter or nil,
      db = db ~= '' and db or nil, max_value = tonumber(max_value) or DEFAULT_MAX_VALUE }
    context.spec, context.parsed = spec, parsed
  end
  context.db = parsed.db
  context.max_value = parsed.max_value
  context.written = NOTHING_WRITTEN
  context.counter = parsed.counter
  return parsed.protocol, parsed.blocking, parsed.counter
end

-- Copies of values (VALUES): <tag over (key, stored)><stored>, stored = 'v' .. value, or 'o' ..
-- its length when it is larger than the limit. A copy written by hand is never used.
local function value_copy(key, stored)
  return tag('value', key, stored) .. stored
end

local function stored_copy(key)
  local copy = redis.pcall('HGET', VALUES, key)
  if type(copy) ~= 'string' then return nil end
  local stored = string.sub(copy, 41)
  if string.sub(copy, 1, 40) ~= tag('value', key, stored) then return nil end
  return stored
end

-- The events whose key holds a string value after the command, and those that set a deadline.
local VALUE_OPS = { set = true, setrange = true, incrby = true, incrbyfloat = true, append = true, setbit = true }
local TTL_OPS = { set = true, expire = true, restore = true, rename_to = true, move_to = true, copy_to = true }

-- A key's value as events and copies hold it: 'v' .. value, or 'o' .. its length when it is
-- larger than the limit; nil for a key that holds no string. The value just written if known
-- (the key may already be gone), else the key's now.
local function value_now(key)
  local value = context.written[key]
  if value == nil then value = redis.pcall('GET', key) end
  if type(value) ~= 'string' then return nil end
  if #value > context.max_value then return 'o' .. #value end
  return 'v' .. value
end

-- The value an event carries (as value_now): for `expired` the copy (or the value just
-- written, for a deadline already past), for string writes the key's value now.
local function event_value(key, op)
  if op == 'expired' then
    local stored = stored_copy(key)
    if stored then return stored end
    return context.written[key] ~= nil and value_now(key) or nil
  end
  if not VALUE_OPS[op] then return nil end
  return value_now(key)
end

-- The WITH fields of one event, as name, value, ... (`numbers`: which are numbers).
local function with_fields(key, op, options, now)
  local fields, numbers = {}, {}
  for _, field in ipairs(options.with_list) do
    if field == 'ts' then
      fields[#fields + 1], fields[#fields + 2] = 'ts', string.format('%d', now)
      numbers.ts = true
    elseif field == 'db' and context.db then
      fields[#fields + 1], fields[#fields + 2] = 'db', context.db
      numbers.db = true
    elseif field == 'ttl' and TTL_OPS[op] then
      local deadline = redis.pcall('PEXPIRETIME', key)
      if type(deadline) == 'number' and deadline > 0 then
        fields[#fields + 1], fields[#fields + 2] = 'ttl', string.format('%d', deadline)
        numbers.ttl = true
      end
    elseif field == 'value' then
      local value = event_value(key, op)
      if value and string.sub(value, 1, 1) == 'v' then
        fields[#fields + 1], fields[#fields + 2] = 'value', string.sub(value, 2)
      elseif value then
        fields[#fields + 1], fields[#fields + 2] = 'value_omitted', string.sub(value, 2)
        numbers.value_omitted = true
      end
    end
  end
  return fields, numbers
end

-- A list event WITH fields: {"key":...,"op":..., then the fields}. A value that is not valid
-- UTF-8 comes as text (U+FFFD for the bytes that are not) and exactly as base64 in "value64".
local function json_event(key, op, options, now)
  local text = event_text(key, op)
  local fields, numbers = with_fields(key, op, options, now)
  local parts = { string.sub(text, 1, -2) }
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if numbers[name] then
      parts[#parts + 1] = ',"' .. name .. '":' .. value
    else
      local utf8, valid = utf8_text(value)
      parts[#parts + 1] = ',"' .. name .. '":"' .. json_escape(utf8) .. '"'
      if not valid then parts[#parts + 1] = ',"' .. name .. '64":"' .. base64(value) .. '"' end
    end
  end
  parts[#parts + 1] = '}'
  return table.concat(parts)
end

-- Events MAXLEN dropped from `list` (statistics: STATS dropped, dropped:<list>).
local function count_dropped(list, dropped)
  if dropped <= 0 then return end
  redis.pcall('HINCRBY', STATS, 'dropped', dropped)
  redis.pcall('HINCRBY', STATS, 'dropped:' .. list, dropped)
end

-- A stream target's events: XADD <target> [MAXLEN ~ <n>] * key <key> op <event> [WITH fields]
-- each; with a MAXLEN, what the trimming dropped is counted exactly (length before + added -
-- length after).
local function push_to_stream(list, texts, options, now)
  local before = options.maxlen and redis.call('XLEN', list)
  for i = 1, texts.n do
    local key, op = texts[i], texts.ops[i]
    local args = { list }
    if options.maxlen then args[2], args[3], args[4] = 'MAXLEN', '~', options.maxlen end
    args[#args + 1], args[#args + 2], args[#args + 3], args[#args + 4], args[#args + 5] = '*', 'key', key, 'op', op
    if options.with then
      for _, field in ipairs((with_fields(key, op, options, now))) do args[#args + 1] = field end
    end
    redis.call('XADD', unpack(args))
  end
  if before then count_dropped(list, before + texts.n - redis.call('XLEN', list)) end
end

-- Pushes events to a list target: `texts` (an array with its count in `n`, or one text). A list
-- with a MAXLEN keeps its newest events (LTRIM), counting those it drops.
local function push_to_list(list, texts, options)
  local length
  if type(texts) == 'string' then
    length = redis.call('RPUSH', list, texts)
  elseif texts.n == 1 then
    length = redis.call('RPUSH', list, texts[1])
  else
    local replies = pcall_in_slices('RPUSH', list, texts, 1)
    length = replies[#replies]
  end
  if options.maxlen and type(length) == 'number' and length > options.maxlen then
    redis.call('LTRIM', list, -options.maxlen, -1)
    count_dropped(list, length - options.maxlen)
  end
end

-- Counts `count` pushed events, by op: `ops` (op -> number), or all of `op`. A proxy's writes
-- count them for it alone (count_pushed): they join `events` when it takes them
-- (notifylist_take_counts), one HINCRBY per write instead of two. Only statistics.
local function count_events(count, ops, op)
  if not context.counter then redis.pcall('HINCRBY', STATS, 'events', count) end
  if op then
    pushed_by_op[op] = (pushed_by_op[op] or 0) + count
    return
  end
  for name, n in pairs(ops) do pushed_by_op[name] = (pushed_by_op[name] or 0) + n end
end

-- Pushes the events (every list was checked to take them). Once per events table.
local function push_events(events)
  if events.count == 0 then return 0 end
  local by_list = events.lists
  for n = 1, #by_list do
    local list = by_list[n]
    local texts = by_list[list]
    local options = texts.options
    if options.with then events.now = events.now or now_ms() end
    if options.stream then
      push_to_stream(list, texts, options, events.now)
    else
      if options.with then
        -- (Made now: the fields read the keys after the command.)
        local made = { n = texts.n }
        for i = 1, texts.n do made[i] = json_event(texts[i], texts.ops[i], options, events.now) end
        texts = made
      end
      push_to_list(list, texts, options)
    end
  end
  count_events(events.count, events.ops)
  return events.count
end

-- The events a proxy's write pushed in the selected database, counted for the proxy.
local function count_pushed()
  if context.counter then
    for op, n in pairs(pushed_by_op) do redis.pcall('HINCRBY', STATS, context.counter .. ':' .. op, n) end
  end
  for op in pairs(pushed_by_op) do pushed_by_op[op] = nil end
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

-- (A value copy goes with its entry; pcall: a user who may not write VALUES has made none.)
local function unindex_key(key)
  redis.call('ZREM', EXPIRY, key)
  redis.call('HDEL', TAGS, key)
  redis.pcall('HDEL', VALUES, key)
end

-- Many keys' entries at once (in slices).
local function unindex_keys(keys)
  pcall_in_slices('ZREM', EXPIRY, keys, 1)
  pcall_in_slices('HDEL', TAGS, keys, 1)
  pcall_in_slices('HDEL', VALUES, keys, 1)
end

-- The copy of an indexed key's value, for registrations WITH value: kept true at every write
-- (a string's value, or only its length above the limit; a key of another type has none).
local function copy_value(key, lists)
  if not wants_values(lists) then return end
  local stored = value_now(key)
  if stored then redis.call('HSET', VALUES, key, value_copy(key, stored)) else redis.call('HDEL', VALUES, key) end
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
  copy_value(key, lists)
  return pushed, true, false, deadline
end

-- SET's condition ('nx', 'xx' or nil) and whether it sets a TTL (EX, PX, EXAT, PXAT). (A value
-- equal to "NX" is never at an option position that matters: with a conflicting or misplaced
-- option Redis answers a syntax error.)
local SET_TTL_OPTIONS = { ex = true, px = true, exat = true, pxat = true }
-- Also whether it keeps the key's TTL (KEEPTTL): with neither, the key has no deadline after it.
local function set_options(args)
  local condition, ttl, keep = nil, false, false
  for i = 4, #args do
    local option = string.lower(args[i])
    if option == 'nx' or option == 'xx' then
      condition = option
    elseif SET_TTL_OPTIONS[option] then
      ttl = true
    elseif option == 'keepttl' then
      keep = true
    end
  end
  return condition, ttl, keep
end

-- Blocking commands Redis refuses in scripts, run as their non-blocking forms (a function cannot
-- block; inside MULTI Redis does the same): the first key (in order) that has something gives it.
local NON_BLOCKING = { blpop = 'LPOP', brpop = 'RPOP', bzpopmin = 'ZPOPMIN', bzpopmax = 'ZPOPMAX', blmove = 'LMOVE',
  brpoplpush = 'RPOPLPUSH' }
local function run_without_blocking(name, args)
  if not redis.acl_check_cmd(unpack(args)) then
    return redis.error_reply("NOPERM this user has no permissions to run the '" .. name .. "' command")
  end
  local form = NON_BLOCKING[name]
  if name == 'blmove' or name == 'brpoplpush' then return redis.pcall(form, unpack(args, 2, #args - 1)) end
  for i = 2, #args - 1 do
    local reply = redis.pcall(form, args[i])
    if is_error(reply) then return reply end
    if type(reply) == 'table' and reply[1] ~= nil then return { args[i], reply[1], reply[2] } end
    if type(reply) == 'string' then return { args[i], reply } end
  end
  return nil
end

-- XREADGROUP without its BLOCK option (refused in scripts; the same read otherwise).
local XREADGROUP_OPTIONS = { group = 3, count = 2, block = 2, noack = 1 } -- words each option takes
local function without_block(args)
  local kept = { args[1] }
  local i = 2
  while i <= #args do
    local word = string.lower(args[i])
    local words = XREADGROUP_OPTIONS[word]
    if not words then -- STREAMS (or a syntax error Redis reports): the rest as it is
      for j = i, #args do kept[#kept + 1] = args[j] end
      break
    end
    if word ~= 'block' then
      for j = i, math.min(#args, i + words - 1) do kept[#kept + 1] = args[j] end
    end
    i = i + words
  end
  return kept
end

local function run_command(name, args)
  if NON_BLOCKING[name] then return run_without_blocking(name, args) end
  if name == 'xreadgroup' then return redis.pcall(unpack(without_block(args))) end
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

-- Did the command write? For SET, `condition` is its NX/XX (set_options) and `before_exists`
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

-- Keeps a key's index entry true after a command that may have changed its TTL or removed it.
-- A key that is gone was deleted, not expired: its entry is dropped without an event.
local function sync_index(key, had_entry, surely_exists, lists)
  local deadline = surely_exists and redis.call('PEXPIRETIME', key) or key_deadline(key)
  if deadline > 0 then
    index_key(key, deadline)
    copy_value(key, lists)
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

-- ---- The events of each write command (REDIS-FACTS.md: keyspace event names per write) ----
-- A command's model sees `c`: its name, args (args[1] the command), reply (RESP3 conversion),
-- keys (its written keys in the order rewrite.ts declares them), lists (key index -> lists) and
-- `existed` (key -> whether it existed before the command, read for keys whose lists take `new`
-- and for every key of the commands in READS_BEFORE). `c.before` holds what a model's `before`
-- read ahead of the command. It emits Redis's events in Redis's order; emit() keeps those the
-- key's lists take.

local function emit(c, index, op)
  local lists = c.lists[index]
  if lists then add_event(c.events, c.keys[index], op, lists) end
end

local function exists_after(c, index)
  local key = c.keys[index]
  local known = c.exists[key]
  if known == nil then
    known = key_exists(key)
    c.exists[key] = known
  end
  return known
end

-- `new` if the command created the key (Redis's dbAdd on a key that did not exist).
local function created(c, index)
  local key = c.keys[index]
  if c.existed[key] == false and exists_after(c, index) then
    emit(c, index, 'new')
    c.existed[key] = true
  end
end

-- `del` if the command removed the key (a container left empty).
local function emptied(c, index)
  if not exists_after(c, index) then emit(c, index, 'del') end
end

local function lower_at(args, i)
  return args[i] and string.lower(args[i]) or nil
end

-- A reply that says something was returned: not a null, an empty array or an empty set.
local function nonempty(reply)
  if reply == nil or reply == false then return false end
  if type(reply) ~= 'table' then return true end
  if reply.set then return next(reply.set) ~= nil end
  if reply.map then return next(reply.map) ~= nil end
  if reply.ok or reply.double or reply.big_number then return true end
  return reply[1] ~= nil
end

local function positive(reply)
  return type(reply) == 'number' and reply > 0
end

local function ok(reply)
  return type(reply) == 'table' and reply.ok ~= nil
end

-- Pure event models.
local function always(op)
  return function(c)
    created(c, 1)
    emit(c, 1, op)
  end
end

local function when(op, test)
  return function(c)
    if test(c.reply) then
      created(c, 1)
      emit(c, 1, op)
    end
  end
end

-- `op` and then `del` if the key is left empty (pops and removals).
local function removing(op, test)
  return function(c)
    if test(c.reply) then
      emit(c, 1, op)
      emptied(c, 1)
    end
  end
end

-- The *STORE commands: `op` on the destination (keys[1]) if the result is not empty, else `del`
-- if the destination existed.
local function storing(op)
  return function(c)
    if positive(c.reply) then
      created(c, 1)
      emit(c, 1, op)
    elseif c.existed[c.keys[1]] then
      emit(c, 1, 'del')
    end
  end
end

-- EXPIRE*, GETEX with a time: `expire`, or `del` when the time has passed (Redis deletes the key).
local function expiring(c)
  if exists_after(c, 1) then emit(c, 1, 'expire') else emit(c, 1, 'del') end
end

-- LMOVE-like: pushes on the destination first, then pops from the source.
local function moving(c, from, to)
  if not nonempty(c.reply) then return end
  created(c, 2)
  emit(c, 2, to == 'left' and 'lpush' or 'rpush')
  emit(c, 1, from == 'left' and 'lpop' or 'rpop')
  emptied(c, 1)
end

-- LMPOP/ZMPOP: the key the reply names (keys are the command's keys in order).
local function popped_from(c, op)
  if not nonempty(c.reply) then return end
  for index, key in ipairs(c.keys) do
    if key == c.reply[1] then
      emit(c, index, op)
      emptied(c, index)
      return
    end
  end
end

-- The members of a ZADD / GEOADD: after the options, every `step`-th argument from the first
-- score (ZADD) or longitude (GEOADD) on, offset by `offset`.
local ZADD_OPTIONS = { nx = true, xx = true, gt = true, lt = true, ch = true, incr = true }
local function zadd_members(args, options, step, offset)
  local first, incr = 3, false
  while args[first] and options[string.lower(args[first])] do
    if string.lower(args[first]) == 'incr' then incr = true end
    first = first + 1
  end
  local members = {}
  for i = first + offset, #args, step do members[#members + 1] = args[i] end
  return members, incr
end

-- The scores of members (false: not a member), or nil if they cannot be read.
local function scores_of(key, members)
  if #members == 0 then return {} end
  local reply = redis.pcall('ZMSCORE', key, unpack(members))
  if is_error(reply) then return nil end
  return reply
end

local function scores_changed(before, after)
  if not before or not after then return false end
  for i = 1, #after do
    if before[i] ~= after[i] then return true end
  end
  return false
end

-- A score as Redis reads it (strtod, with inf), or nil.
local function score_number(text)
  local lower = string.lower(text)
  if lower == 'inf' or lower == '+inf' then return math.huge end
  if lower == '-inf' then return -math.huge end
  return tonumber(text)
end

-- Did ZADD add a member or change a score? Its pairs replayed in order over the scores before
-- (Redis's zsetAdd: NX, XX, GT, LT, INCR; an unchanged score is no update). nil: cannot tell.
local function zadd_changed(args, before)
  local flags, first = {}, 3
  while args[first] and ZADD_OPTIONS[string.lower(args[first])] do
    flags[string.lower(args[first])] = true
    first = first + 1
  end
  local current, n = {}, 0
  for i = first + 1, #args, 2 do
    n = n + 1
    if current[args[i]] == nil then current[args[i]] = before[n] and score_number(before[n]) or false end
  end
  for i = first, #args - 1, 2 do
    local score, member = score_number(args[i]), args[i + 1]
    if not score then return nil end
    local old = current[member]
    if old == false then
      if not flags.xx then return true end
    elseif not flags.nx then
      local new = flags.incr and old + score or score
      if not (flags.gt and new <= old) and not (flags.lt and new >= old) and new ~= old then return true end
    end
  end
  return false
end

-- ZADD, ZINCRBY and GEOADD: `zadd` (`zincr` with INCR) if a member was added or its score changed.
-- ZADD and ZINCRBY replay their pairs; GEOADD (whose scores are geohashes) compares the scores
-- after with those before.
local function scoring(options, step, offset, replay)
  return {
    before = function(c)
      local members, incr = zadd_members(c.args, options, step, offset)
      c.before.members, c.before.incr = members, incr
      c.before.scores = scores_of(c.keys[1], members)
    end,
    after = function(c)
      local changed = nil
      if replay and c.before.scores then changed = replay(c.args, c.before.scores) end
      if changed == nil then changed = scores_changed(c.before.scores, scores_of(c.keys[1], c.before.members)) end
      if changed then
        created(c, 1)
        emit(c, 1, (c.before.incr or c.name == 'zincrby') and 'zincr' or 'zadd')
      end
    end,
  }
end

-- Does the consumer exist in the group of the stream? (XINFO CONSUMERS; false if unknown.)
local function has_consumer(key, group, consumer)
  local reply = redis.pcall('XINFO', 'CONSUMERS', key, group)
  if is_error(reply) then return false end
  for _, info in ipairs(reply) do
    for i = 1, #info - 1, 2 do
      if info[i] == 'name' and info[i + 1] == consumer then return true end
    end
  end
  return false
end

-- XREADGROUP, XCLAIM, XAUTOCLAIM: `xgroup-createconsumer` on each stream where they created the
-- consumer. `where(args)`: the group and the consumer.
local function consuming(where)
  return {
    before = function(c)
      local group, consumer = where(c.args)
      c.before.group, c.before.consumer, c.before.had = group, consumer, {}
      for index, key in ipairs(c.keys) do
        if c.lists[index] then c.before.had[index] = has_consumer(key, group, consumer) end
      end
    end,
    after = function(c)
      for index, key in ipairs(c.keys) do
        if c.lists[index] and not c.before.had[index] and has_consumer(key, c.before.group, c.before.consumer) then
          emit(c, index, 'xgroup-createconsumer')
        end
      end
    end,
  }
end

local function string_length(key)
  local n = redis.pcall('STRLEN', key)
  return type(n) == 'number' and n or 0
end

-- Every write command the proxy rewrites (rewrite.ts) other than the SET family: its events, from
-- its reply and what was read before it ran. A model is a function (after the command) or
-- { before = ..., after = ... }.
local MODELS = {
  -- strings
  getex = {
    before = function(c) c.before.ttl = key_deadline(c.keys[1]) > 0 end,
    after = function(c)
      if not nonempty(c.reply) then return end
      for i = 3, #c.args do
        local option = string.lower(c.args[i])
        if SET_TTL_OPTIONS[option] then return expiring(c) end
        if option == 'persist' then
          if c.before.ttl then emit(c, 1, 'persist') end
          return
        end
      end
    end,
  },
  getdel = function(c)
    if nonempty(c.reply) then emit(c, 1, 'del') end
  end,
  append = always('append'),
  setrange = function(c)
    if c.args[4] ~= '' then
      created(c, 1)
      emit(c, 1, 'setrange')
    end
  end,
  incr = always('incrby'), decr = always('incrby'), incrby = always('incrby'), decrby = always('incrby'),
  incrbyfloat = always('incrbyfloat'),
  setbit = {
    before = function(c) c.before.length = string_length(c.keys[1]) end,
    after = function(c)
      if c.existed[c.keys[1]] == false or tostring(c.reply) ~= c.args[4] or string_length(c.keys[1]) > c.before.length then
        created(c, 1)
        emit(c, 1, 'setbit')
      end
    end,
  },
  bitfield = {
    before = function(c) c.before.value = redis.pcall('GET', c.keys[1]) end,
    after = function(c)
      local value = redis.pcall('GET', c.keys[1])
      if (c.existed[c.keys[1]] == false and exists_after(c, 1)) or value ~= c.before.value then
        created(c, 1)
        emit(c, 1, 'setbit')
      end
    end,
  },
  bitop = storing('set'),
  pfadd = when('pfadd', function(reply) return reply == 1 end),
  pfmerge = always('pfadd'),
  -- lists
  lpush = always('lpush'), rpush = always('rpush'),
  lpushx = when('lpush', positive), rpushx = when('rpush', positive),
  linsert = when('linsert', positive),
  lset = when('lset', ok),
  lpop = removing('lpop', nonempty), rpop = removing('rpop', nonempty),
  ltrim = function(c)
    if c.existed[c.keys[1]] then
      emit(c, 1, 'ltrim')
      emptied(c, 1)
    end
  end,
  lrem = removing('lrem', positive),
  rpoplpush = function(c) moving(c, 'right', 'left') end,
  lmove = function(c) moving(c, lower_at(c.args, 4), lower_at(c.args, 5)) end,
  lmpop = function(c)
    popped_from(c, lower_at(c.args, 3 + tonumber(c.args[2])) == 'left' and 'lpop' or 'rpop')
  end,
  blpop = function(c) popped_from(c, 'lpop') end,
  brpop = function(c) popped_from(c, 'rpop') end,
  blmove = function(c) moving(c, lower_at(c.args, 4), lower_at(c.args, 5)) end,
  brpoplpush = function(c) moving(c, 'right', 'left') end,
  blmpop = function(c)
    popped_from(c, lower_at(c.args, 4 + tonumber(c.args[3])) == 'left' and 'lpop' or 'rpop')
  end,
  -- hashes
  hset = always('hset'), hmset = always('hset'),
  hsetnx = when('hset', function(reply) return reply == 1 end),
  hincrby = always('hincrby'), hincrbyfloat = always('hincrbyfloat'),
  hdel = removing('hdel', positive),
  -- sets
  sadd = when('sadd', positive),
  srem = removing('srem', positive),
  smove = {
    before = function(c) c.before.member = redis.pcall('SISMEMBER', c.keys[2], c.args[4]) == 1 end,
    after = function(c)
      if c.reply ~= 1 or c.keys[1] == c.keys[2] then return end
      emit(c, 1, 'srem')
      emptied(c, 1)
      created(c, 2)
      if not c.before.member then emit(c, 2, 'sadd') end
    end,
  },
  spop = removing('spop', nonempty),
  sinterstore = storing('sinterstore'), sunionstore = storing('sunionstore'), sdiffstore = storing('sdiffstore'),
  -- sorted sets
  zadd = scoring(ZADD_OPTIONS, 2, 1, zadd_changed),
  zincrby = scoring({}, 2, 1, function(args, before)
    return zadd_changed({ args[1], args[2], 'incr', args[3], args[4] }, before)
  end),
  zrem = removing('zrem', positive),
  zremrangebyscore = removing('zremrangebyscore', positive),
  zremrangebyrank = removing('zremrangebyrank', positive),
  zremrangebylex = removing('zremrangebylex', positive),
  zpopmin = removing('zpopmin', nonempty), zpopmax = removing('zpopmax', nonempty),
  zmpop = function(c)
    popped_from(c, lower_at(c.args, 3 + tonumber(c.args[2])) == 'min' and 'zpopmin' or 'zpopmax')
  end,
  bzpopmin = function(c) popped_from(c, 'zpopmin') end,
  bzpopmax = function(c) popped_from(c, 'zpopmax') end,
  bzmpop = function(c)
    popped_from(c, lower_at(c.args, 4 + tonumber(c.args[3])) == 'min' and 'zpopmin' or 'zpopmax')
  end,
  zunionstore = storing('zunionstore'), zinterstore = storing('zinterstore'), zdiffstore = storing('zdiffstore'),
  zrangestore = storing('zrangestore'),
  geoadd = scoring({ nx = true, xx = true, ch = true }, 3, 2),
  georadius = storing('georadiusstore'), georadiusbymember = storing('georadiusstore'),
  geosearchstore = storing('geosearchstore'),
  -- streams
  xadd = {
    before = function(c)
      local n = redis.pcall('XLEN', c.keys[1])
      c.before.length = type(n) == 'number' and n or 0
    end,
    after = function(c)
      if not nonempty(c.reply) then return end
      created(c, 1)
      emit(c, 1, 'xadd')
      local n = redis.pcall('XLEN', c.keys[1])
      if type(n) == 'number' and n < c.before.length + 1 then emit(c, 1, 'xtrim') end
    end,
  },
  xtrim = when('xtrim', positive),
  xdel = when('xdel', positive),
  xsetid = when('xsetid', ok),
  xgroup = {
    before = function(c)
      if lower_at(c.args, 2) == 'delconsumer' then c.before.had = has_consumer(c.keys[1], c.args[4], c.args[5]) end
    end,
    after = function(c)
      local sub, reply = lower_at(c.args, 2), c.reply
      if sub == 'create' and ok(reply) then
        created(c, 1)
        emit(c, 1, 'xgroup-create')
      elseif sub == 'setid' and ok(reply) then
        emit(c, 1, 'xgroup-setid')
      elseif sub == 'destroy' and reply == 1 then
        emit(c, 1, 'xgroup-destroy')
      elseif sub == 'createconsumer' and reply == 1 then
        emit(c, 1, 'xgroup-createconsumer')
      elseif sub == 'delconsumer' and c.before.had then
        emit(c, 1, 'xgroup-delconsumer')
      end
    end,
  },
  xreadgroup = consuming(function(args)
    for i = 2, #args - 2 do
      if string.lower(args[i]) == 'group' then return args[i + 1], args[i + 2] end
    end
    return '', ''
  end),
  xclaim = consuming(function(args) return args[3], args[4] end),
  xautoclaim = consuming(function(args) return args[3], args[4] end),
  -- generic
  persist = when('persist', positive),
  rename = function(c)
    if is_error(c.reply) or c.reply == 0 or c.keys[1] == c.keys[2] then return end
    emit(c, 2, 'new') -- the destination is always added anew (an old one is deleted first)
    emit(c, 1, 'rename_from')
    emit(c, 2, 'rename_to')
  end,
  restore = function(c)
    if not ok(c.reply) then return end
    if exists_after(c, 1) then
      emit(c, 1, 'new') -- always added anew (REPLACE deletes the old one first)
      emit(c, 1, 'restore')
    elseif c.existed[c.keys[1]] then
      emit(c, 1, 'del') -- a TTL already in the past: REPLACE deleted the old key, nothing added
    end
  end,
  sort = storing('sortstore'),
  -- MIGRATE: `del` for each key it moved away (not with COPY); its options from args[7] on.
  migrate = function(c)
    if not ok(c.reply) then return end
    local i = 7
    while c.args[i] do
      local option = string.lower(c.args[i])
      if option == 'copy' then return end
      if option == 'keys' then break end
      i = i + (({ auth = 2, auth2 = 3 })[option] or 1)
    end
    for index, key in ipairs(c.keys) do
      if c.existed[key] and not exists_after(c, index) then
        emit(c, index, 'del')
        c.existed[key] = false
      end
    end
  end,
}
MODELS.renamenx = MODELS.rename
MODELS.expire = function(c)
  if c.reply == 1 then expiring(c) end
end
MODELS.pexpire, MODELS.expireat, MODELS.pexpireat = MODELS.expire, MODELS.expire, MODELS.expire
-- (COPY and MOVE: see copy_or_move; DEL and UNLINK: see the write function.)

-- The commands that need `existed` for every key with lists, whatever the lists take.
local READS_BEFORE = { ltrim = true, setbit = true, bitfield = true, bitop = true,
  sinterstore = true, sunionstore = true, sdiffstore = true, zunionstore = true, zinterstore = true,
  zdiffstore = true, zrangestore = true, georadius = true, georadiusbymember = true, geosearchstore = true,
  sort = true, restore = true, migrate = true }
-- The commands that can give a key a TTL (every other one only keeps or removes it).
local GIVES_TTL = { getex = true, expire = true, pexpire = true, expireat = true, pexpireat = true,
  restore = true, rename = true, renamenx = true, copy = true }

-- A key that left this database (MOVE, COPY ... DB): its events (`ops`) and index entry in its new
-- database, under the registrations of that database. Must run last: it leaves this function in
-- the other database. Runs after the write, so it cannot refuse: an event list there that cannot
-- take events is skipped.
local function arrive_in_other_db(db, key, argv, now, ops)
  count_pushed() -- (those of this database, in it)
  redis.call('SELECT', db)
  context.db = db
  local lists_by_key = verified_lists(argv, CANDIDATES_AT, 2)
  drop_targets({ key, key }, lists_by_key)
  if not lists_by_key[2] then return end
  local usable = lists_taking_events(lists_by_key[2])
  -- An indexed incarnation there that ran out before the command (MOVE/COPY deleted it as
  -- expired when they looked the destination up) is reported now, before its entry is reused.
  settle(key, usable, now, nil, true)
  local events = new_events()
  for _, op in ipairs(ops) do add_event(events, key, op, usable) end
  push_events(events)
  sync_index(key, nil, false, usable)
end

-- notifylist_write and what only it uses, in a block: the main chunk is at Lua's limit of 200 locals.
local notifylist_write
do
-- The commands whose reply for "nothing" is a null array, and those whose integer reply may be
-- above 2^53 (exact: the value they left, read back).
local NULL_ARRAY_REPLIES = { lpop = true, rpop = true, lmpop = true, zmpop = true, xreadgroup = true, blpop = true,
  brpop = true, blmpop = true, bzpopmin = true, bzpopmax = true, bzmpop = true }
local INTEGER_VALUE_REPLIES = { incr = true, decr = true, incrby = true, decrby = true, hincrby = true }
local EXACT_UP_TO = 9007199254740992 -- 2^53

-- The reply for the client: the command's, or a marked one (see marked) where Lua cannot give it.
local function exact_reply(name, keys, args, reply)
  if (reply == nil or reply == false) and NULL_ARRAY_REPLIES[name] and (#args >= 3 or (name ~= 'lpop' and name ~= 'rpop')) then
    return marked('n') -- (LPOP and RPOP: with a count; without one, a null bulk string)
  end
  if type(reply) == 'number' and INTEGER_VALUE_REPLIES[name] and (reply >= EXACT_UP_TO or reply <= -EXACT_UP_TO) then
    local value
    if name == 'hincrby' then value = redis.pcall('HGET', keys[1], args[3]) else value = redis.pcall('GET', keys[1]) end
    if type(value) == 'string' and string.match(value, '^-?%d+$') then return marked('i' .. value) end
  end
  return reply
end

-- The common write, `SET <key> <value>` with one candidate: the general path's reads and checks
-- for exactly this case, done inline (none of its tables; Redis's time per evented SET falls by
-- about a quarter), then the command and its one event. Wherever the general path would refuse or
-- branch (a read refused, a candidate it does not verify, a key that is an event target, has an
-- index entry or is its own event list, a filter with `new`, a target that cannot take the event),
-- this returns nil, having written nothing, and the general path runs and gives its own answer.
-- Each check names the general path's step it stands for; test/write-guarantees.test.ts and the
-- events oracle hold the two to the same results.
-- The one event of a one-key, one-target write, without events tables (`now` for WITH fields).
local function push_one_event(key, op, list, options)
  local now = options.with and now_ms()
  if options.stream then
    push_to_stream(list, { key, n = 1, ops = { op } }, options, now)
  else
    push_to_list(list, now and json_event(key, op, options, now) or event_text(key, op), options)
  end
  count_events(1, nil, op)
end

local function plain_set(keys, argv, allowed)
  local key = keys[1]
  local pattern, list, command = argv[CANDIDATES_AT + 2], argv[CANDIDATES_AT + 3], argv[CANDIDATES_AT + 4]
  if argv[CANDIDATES_AT + 1] ~= '1' or argv[CANDIDATES_AT + 5] ~= key or key == list
    or string.sub(argv[CANDIDATES_AT], 1, 2) ~= '1/' or not allowed.set or string.lower(command) ~= 'set' then return nil end
  local _, blocking = set_context(argv[CANDIDATES_AT])
  if blocking ~= '' then return nil end
  -- verified_lists
  local value = redis.pcall('HGET', REGISTRY, pattern)
  if type(value) ~= 'string' then return nil end
  local _, _, filter, _, known = registration(pattern, value)
  if not known or known.list ~= list or not filter.set or filter.new then return nil end
  -- drop_targets; the key's index entry (none: index_free)
  local target = redis.pcall('HGET', TARGETS, key)
  if type(target) == 'string' and target_count(key, target) then return nil end
  if redis.pcall('ZSCORE', EXPIRY, key) ~= false then return nil end
  -- check_targets (index_free, one list)
  local options = options_of(filter)
  local with = options.with
  if not redis.acl_check_cmd('hincrby', STATS, 'events', '1') or list_problem(list, options) ~= nil
    or (with and not redis.acl_check_cmd('time')) then return nil end
  if with and with.value and check_hash_rights(VALUES) then return nil end
  local reply = redis.pcall(command, key, argv[CANDIDATES_AT + 6])
  if is_error(reply) then return reply end
  push_one_event(key, 'set', list, options)
  count_pushed()
  return reply
end

-- FCALL notifylist_write <numkeys> <keys...> <secret> <candidates...> <command> <args...>
-- Runs the client's command with pcall and, only if it wrote, pushes Redis's events of the
-- command (MODELS) per (written key, verified list that takes the event); keeps the expiry index
-- true. Returns the command's own reply.
-- The reply must stay the command's, so the events pushed go to the calling proxy's counter
-- (`<n>/<client protocol>/<proxy counter>` in the candidates) in STATS, field `<proxy counter>:<op>`.
-- Candidate key indexes refer to KEYS (a large MSET, MSETNX, DEL or UNLINK: to its keys, sent
-- without KEYS); for MOVE, KEYS[2] stands for the key in the target db.
-- Every check comes before the first write; nothing after the command can fail.
function notifylist_write(keys, argv, allowed)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  for op in pairs(pushed_by_op) do pushed_by_op[op] = nil end
  if #argv == CANDIDATES_AT + 6 and #keys == 1 then
    local reply = plain_set(keys, argv, allowed)
    if reply ~= nil then return reply end
  end
  -- (`b`: a blocking command outside MULTI, which says so if it would block: marked `w`.)
  local protocol, blocking, counter = set_context(argv[CANDIDATES_AT])
  -- (Keys read from the command's arguments are fewer than the arguments.)
  local lists_by_key, command_at, refused = verified_lists(argv, CANDIDATES_AT, #keys > 0 and #keys or #argv)
  if refused then return refused end
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

  local condition, set_ttl, keep_ttl = nil, false, false
  if name == 'set' and lists_by_key[1] then condition, set_ttl, keep_ttl = set_options(args) end
  local untimed = UNTIMED[name] or (name == 'set' and not set_ttl and not keep_ttl)
  -- One key's entry first (its ZSCORE's own refusal is the check): without one, an untimed write
  -- needs nothing of the index (check_targets: index_free).
  local entries, index_free = nil, false
  if #keys == 1 and lists_by_key[1] then
    local score = redis.pcall('ZSCORE', EXPIRY, keys[1])
    if type(score) == 'table' then return no_permission('run zscore on ' .. EXPIRY) end
    entries = { tonumber(score) }
    index_free = untimed and score == false
  end
  local reads_after = not untimed
  refused = check_targets(keys, lists_by_key, name, reads_after, index_free)
  if refused then return refused end
  entries = entries or index_entries(keys, lists_by_key)
  local is_del = name == 'del' or name == 'unlink'
  -- What must be read of the keys before the command: whether they exist, for `new` and the
  -- models that need it (DEL: only for `del`).
  -- (nil, the common case: nothing to read.)
  local reads_before, reading = READS_BEFORE[name], nil
  for index, lists in pairs(lists_by_key) do
    if reads_before or wants(lists, 'new') or (is_del and wants(lists, 'del')) then
      reading = reading or {}
      reading[index] = true
    end
  end
  if not reads_after then
    -- Settling, `existed` and SET NX / XX read the keys.
    for index in pairs(entries) do
      refused = check_key_reads(keys[index])
      if refused then return refused end
    end
    for index in pairs(reading or NO_LISTS) do
      refused = check_key_reads(keys[index])
      if refused then return refused end
    end
    if condition then
      refused = check_key_reads(keys[1])
      if refused then return refused end
    end
  end

  local before_exists = nil
  if condition then before_exists = key_exists(keys[1]) end
  local other_db = (name == 'move' and args[3]) or (name == 'copy' and copy_target_db(args)) or nil
  if other_db and not redis.acl_check_cmd('select', other_db) then
    return no_permission('SELECT ' .. other_db)
  end

  -- Settle first: an indexed incarnation that has already expired is reported before the write.
  local indexed = NO_LISTS
  if next(entries) ~= nil then
    indexed = {}
    local now = now_ms()
    for index, deadline in pairs(entries) do
      local _, remains = settle(keys[index], lists_by_key[index], now, deadline)
      indexed[index] = remains
    end
  end
  -- MOVE / COPY ... DB: Redis's clock before the command, to settle the destination database.
  local before = nil
  if other_db then before = now_ms() end

  local existed = reading and {} or NO_LISTS
  for index in pairs(reading or NO_LISTS) do
    local key = keys[index]
    if existed[key] == nil then
      if index == 1 and before_exists ~= nil then existed[key] = before_exists else existed[key] = key_exists(key) end
    end
  end
  -- What the events need (the SET family without `new` needs none of it: its fast path).
  local c = nil
  local model, after = MODELS[name], nil
  if reading or not SET_FAMILY[name] then
    c = { name = name, args = args, keys = keys, lists = lists_by_key, existed = existed, exists = {}, before = {} }
    after = model
    if type(model) == 'table' then
      after = model.after
      if model.before and next(lists_by_key) ~= nil then model.before(c) end
    end
  end

  -- In the client's protocol, whose replies differ in shape (ZPOPMIN with a count, XREADGROUP's map,
  -- doubles): RESP2's null is false, which a RESP2 client then gets as a null; RESP3's stays nil.
  if protocol == '3' then redis.setresp(3) end
  local reply = run_command(name, args)
  if protocol == '3' then redis.setresp(2) end
  local client_reply = reply
  if blocking == 'b' and (reply == nil or reply == false) then
    client_reply = marked('w') -- (nothing happened: no events either)
  elseif NULL_ARRAY_REPLIES[name] or INTEGER_VALUE_REPLIES[name] then
    client_reply = exact_reply(name, keys, args, reply)
  end
  if c then c.reply = reply end

  if is_error(reply) or next(lists_by_key) == nil then
    -- No event where Redis publishes none.
  elseif SET_FAMILY[name] then
    local lists = #keys == 1 and not reading and untimed and lists_by_key[1]
    local list = lists and #lists == 1 and lists[1]
    local options = list and options_of(lists[list])
    if not command_wrote(name, reply, condition, before_exists) then
      -- (Nothing written: no event.)
    elseif list and lists[list].set then
      -- The common write (one key, one target, no deadline after it): its one event without
      -- events tables.
      if indexed[1] then unindex_key(keys[1]) end
      push_one_event(keys[1], 'set', list, options)
    else
      local events = new_events(keys)
      if c then c.events = events end
      local unindexed = {}
      if name == 'mset' or name == 'msetnx' then
        if not reading then
          add_events(events, keys, lists_by_key, 'set')
        else
          for index, key in ipairs(keys) do
            c.exists[key] = true -- (written: it exists, even with a deadline already past)
            created(c, index)
            emit(c, index, 'set')
          end
        end
        -- They leave the keys without a TTL.
        for index, remains in pairs(indexed) do
          if remains then unindexed[#unindexed + 1] = keys[index] end
        end
      else
        local lists = lists_by_key[1]
        if lists then
          local key = keys[1]
          if reading then
            c.exists[key] = true -- (written: it exists, even with a deadline already past)
            created(c, 1)
          end
          add_event(events, key, 'set', lists)
          if set_ttl or name == 'setex' or name == 'psetex' then
            add_event(events, key, 'expire', lists)
            -- (Its deadline may be past already: the key is gone before its `expired` is made.)
            if context.written == NOTHING_WRITTEN then context.written = {} end
            context.written[key] = (name == 'setex' or name == 'psetex') and args[4] or args[3]
          end
          if untimed then
            if indexed[1] then unindex_key(key) end -- (it leaves the key without a deadline)
          elseif sync_index(key, indexed[1] or false, true, lists) == -2 then
            -- A deadline already in the past (SET ... PXAT <past>): Redis drops the key at once.
            add_event(events, key, 'expired', lists)
          end
        end
      end
      if #unindexed > 0 then unindex_keys(unindexed) end
      push_events(events)
    end
  elseif is_del then
    -- Whatever they found is gone now: its entry goes, without an event.
    c.events = new_events(keys)
    local unindexed = {}
    for index, key in ipairs(keys) do
      if indexed[index] then unindexed[#unindexed + 1] = key end
      if existed[key] and lists_by_key[index] then
        emit(c, index, 'del')
        existed[key] = false -- DEL k k deletes it once
      end
    end
    if #unindexed > 0 then unindex_keys(unindexed) end
    push_events(c.events)
  elseif name == 'move' then
    if reply == 1 then
      c.events = new_events()
      emit(c, 1, 'move_from')
      push_events(c.events)
      unindex_key(keys[1])
      arrive_in_other_db(args[3], keys[1], argv, before, { 'new', 'move_to' })
    end
  elseif name == 'copy' then
    if reply == 1 then
      if other_db then
        arrive_in_other_db(other_db, keys[2], argv, before, { 'new', 'copy_to' })
      else
        c.events = new_events()
        emit(c, 2, 'new')
        emit(c, 2, 'copy_to')
        push_events(c.events)
        if lists_by_key[2] then sync_index(keys[2], indexed[2] or false, false, lists_by_key[2]) end
      end
    end
  else
    c.events = new_events(keys)
    after(c)
    push_events(c.events)
    local gives_ttl = GIVES_TTL[name]
    for index, key in ipairs(keys) do
      if lists_by_key[index] and (gives_ttl or indexed[index]) then sync_index(key, indexed[index] or false, false, lists_by_key[index]) end
    end
  end
  -- (After MOVE / COPY ... DB in the other database: the proxy takes its counters from every one.)
  count_pushed()
  return client_reply
end
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
    local known, options = target_count(fields[i], fields[i + 1])
    if known and other_type(fields[i], target_options(options)) then count = count + 1 end
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
    -- Events pushed here: `events`, and those a proxy has not taken yet (its counter's fields;
    -- the others are `dropped` and `dropped:<target>`).
    local events = 0
    local fields = redis.call('HGETALL', STATS)
    for i = 1, #fields, 2 do
      local field = fields[i]
      if field == 'events' or (string.find(field, ':', 1, true) and not starts_with(field, 'dropped:')) then events = events + (tonumber(fields[i + 1]) or 0) end
    end
    local dropped = tonumber(redis.call('HGET', STATS, 'dropped')) or 0
    if db == 0 then
      local holder = lease_holder(redis.call('GET', PREFIX .. 'reaper'), now)
      lines[#lines + 1] = 'reaper_lease_holder:' .. (holder or '')
    end
    if registrations > 0 or indexed > 0 or events > 0 then
      local overdue = redis.call('ZCOUNT', EXPIRY, '-inf', '(' .. now)
      lines[#lines + 1] = string.format('db%d:registrations=%d,indexed=%d,overdue=%d,events=%d,blocked=%d,dropped=%d',
        db, registrations, indexed, overdue, events, blocked_targets(), dropped)
    end
  end
  return table.concat(lines, '\r\n') .. '\r\n'
end

-- FCALL notifylist_expired <numkeys> <keys...> <secret> <candidates...> [expired] [lags]
-- Reports keys whose indexed deadline has passed (from the keyevent subscription, which passes
-- `expired`: Redis published `expired` for these keys, or from the reaper). A key whose event list
-- holds another type (or that the caller may not push to: reported as the type `noperm`) is held
-- back (its entry stays, untouched) until the list is fixed; the other
-- keys are reported. Returns { events pushed, entries left unchanged (held back or not yet due on
-- Redis's clock), [with `lags`: per key reported, ms from its deadline to its event,] then per
-- event list held back: its name and the type it holds }.
local function notifylist_expired(keys, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  set_context(argv[2])
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
        local problem = list_problem(list, options_of(lists[list]))
        -- (The proxy's user may not push there: held back like a target of the wrong type.)
        if type(problem) == 'table' then problem = 'noperm' end
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

-- FCALL notifylist_evicted <numkeys> <keys...> <secret> <candidates...>: Redis published `evicted`
-- for these keys (maxmemory; best effort: from the keyevent subscription only). A key that is gone
-- loses its index entry without an `expired` (it did not expire) and gets `evicted` for the
-- registrations that take it; unless its indexed deadline has passed (that is `expired`'s, left
-- to the reaper: a forged `evicted` cannot take an expiry's event away). Returns the events pushed.
local function notifylist_evicted(keys, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  set_context(argv[2])
  local refused = check_registry_read()
  if refused then return refused end
  local lists_by_key = verified_lists(argv, 2, #keys)
  drop_targets(keys, lists_by_key)
  refused = check_internal_access()
  if refused then return refused end
  local now, pushed = now_ms(), 0
  for index, key in ipairs(keys) do
    if not key_exists(key) then
      local deadline = tonumber(redis.call('ZSCORE', EXPIRY, key))
      if not deadline or deadline >= now then
        if deadline then unindex_key(key) end
        pushed = pushed + push_event(key, 'evicted', lists_taking_events(lists_by_key[index]))
      end
    end
  end
  return pushed
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

-- NOTIFYLIST.SET's options after the target: EVENTS <event or class> ... and WITH <field> ... (up
-- to the next option word), TARGET list|stream, MAXLEN <n>; each at most once, in any order. Returns the events
-- words (nil: no EVENTS) and the options text (target_options), or nil and an error reply.
local SET_OPTIONS = { events = true, target = true, maxlen = true, with = true }
local WITH_FIELD_NAMES = { ts = true, db = true, ttl = true, value = true }

-- The words of an EVENTS or WITH option from argv[i] up to the next option word, and the index
-- after them.
local function option_words(argv, i)
  local words = {}
  while i <= #argv and not SET_OPTIONS[string.lower(argv[i])] do
    words[#words + 1] = argv[i]
    i = i + 1
  end
  return words, i
end

local function set_options_of(argv, from)
  local words, stream, maxlen, seen, with = nil, false, nil, {}, nil
  local i = from
  while i <= #argv do
    local option = string.lower(argv[i])
    if not SET_OPTIONS[option] or seen[option] then return nil, redis.error_reply('ERR syntax error') end
    seen[option] = true
    if option == 'events' then
      words, i = option_words(argv, i + 1)
      if #words == 0 then return nil, redis.error_reply('ERR notifylist: EVENTS needs at least one event name or class') end
    elseif option == 'with' then
      local fields
      fields, i = option_words(argv, i + 1)
      if #fields == 0 then return nil, redis.error_reply('ERR notifylist: WITH needs at least one of ts, db, ttl, value') end
      with = {}
      for _, field in ipairs(fields) do
        if not WITH_FIELD_NAMES[string.lower(field)] then
          return nil, redis.error_reply("ERR notifylist: unknown WITH field '" .. field .. "' (WITH takes ts, db, ttl and value)")
        end
        with[string.lower(field)] = true
      end
    elseif option == 'target' then
      local kind = argv[i + 1] and string.lower(argv[i + 1])
      if kind ~= 'list' and kind ~= 'stream' then return nil, redis.error_reply('ERR notifylist: TARGET is list or stream') end
      stream = kind == 'stream'
      i = i + 2
    else
      local n = argv[i + 1]
      if not n or not string.match(n, '^[1-9]%d*$') or #n > 15 then
        return nil, redis.error_reply('ERR notifylist: MAXLEN must be a positive integer')
      end
      maxlen = n
      i = i + 2
    end
  end
  local options = {}
  if stream then options[#options + 1] = 'stream' end
  if maxlen then options[#options + 1] = 'maxlen=' .. maxlen end
  if with then
    local fields = {}
    for _, name in ipairs(WITH_FIELDS) do
      if with[name] then fields[#fields + 1] = name end
    end
    options[#options + 1] = 'with=' .. table.concat(fields, ',')
  end
  return words, table.concat(options, ' ')
end

-- FCALL notifylist_set 0 <secret> <owner> <refusal> <pattern> <target> [EVENTS <event or class> ...]
-- [TARGET list|stream] [MAXLEN <n>] [WITH <field> ...]
local function notifylist_set(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  if #argv < 5 then return arity_error('notifylist.set') end
  local owner, refusal, pattern, list = argv[2], argv[3], argv[4], argv[5]
  local events = DEFAULT_EVENTS
  local words, options = set_options_of(argv, 6)
  if not words and type(options) == 'table' then return options end
  if words then
    local text, unknown = events_text(words)
    if not text then
      return redis.error_reply("ERR notifylist: unknown event '" .. unknown .. "' (EVENTS takes Redis keyevent names "
        .. 'such as set, del, expired or new, and the classes @generic @string @list @hash @set @zset @stream '
        .. '@expired @evicted @all)')
    end
    events = text
  end
  if starts_with(list, PREFIX) then
    return redis.error_reply('ERR notifylist: the list name must not start with the internal prefix ' .. PREFIX)
  end
  if not redis.acl_check_cmd('hset', REGISTRY, pattern, list) then
    return no_permission('write ' .. REGISTRY)
  end
  local old_list = registered_list(pattern)
  local refused = check_registration(pattern, refusal, old_list ~= list and old_list or nil)
  if refused then return refused end
  refused = target_permission(list, target_options(options))
  if refused then return refused end
  -- One target, one kind and bound: a registration cannot change them under the others sharing it.
  ensure_targets()
  local sharing, current = target_count(list, redis.call('HGET', TARGETS, list))
  if sharing then
    if old_list == list then sharing = sharing - 1 end
    if sharing > 0 and current ~= options then
      return redis.error_reply('ERR notifylist: ' .. sharing .. ' other registration(s) point at ' .. list .. ' with '
        .. (current == '' and 'TARGET list, no MAXLEN and no WITH' or 'the options ' .. current)
        .. '; registrations sharing a target must give it the same TARGET, MAXLEN and WITH')
    end
  end
  track_target(old_list, list, options)
  redis.call('HSET', REGISTRY, pattern, registry_value(pattern, list, owner, events, options))
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

-- FCALL_RO notifylist_list 0 <secret> [WITHOPTIONS]: pattern, list, ... of this database's
-- registrations; WITHOPTIONS: one array per registration, { pattern, list, 'events', { names },
-- 'target', 'list'|'stream' [, 'with', { fields }] [, 'maxlen', n, 'dropped', events MAXLEN dropped
-- from the target] }.
local function notifylist_list(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  if #argv > 2 then return arity_error('notifylist.list') end
  local with_options = false
  if #argv == 2 then
    if string.lower(argv[2]) ~= 'withoptions' then return redis.error_reply('ERR syntax error') end
    with_options = true
  end
  if not redis.acl_check_cmd('hgetall', REGISTRY) then
    return no_permission('read ' .. REGISTRY)
  end
  local fields = redis.call('HGETALL', REGISTRY)
  local reply = {}
  for i = 1, #fields, 2 do
    local list, _, filter, events = registration(fields[i], fields[i + 1])
    if list and with_options then
      local names = {}
      for word in string.gmatch(events, '%S+') do names[#names + 1] = word end
      local options = options_of(filter)
      local entry = { fields[i], list, 'events', names, 'target', options.stream and 'stream' or 'list' }
      if options.with then
        entry[#entry + 1] = 'with'
        entry[#entry + 1] = options.with_list
      end
      if options.maxlen then
        entry[#entry + 1] = 'maxlen'
        entry[#entry + 1] = options.maxlen
        entry[#entry + 1] = 'dropped'
        entry[#entry + 1] = tonumber(redis.call('HGET', STATS, 'dropped:' .. list)) or 0
      end
      reply[#reply + 1] = entry
    elseif list then
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
      redis.call('HSET', REGISTRY, fields[i], registry_value(fields[i], fields[i + 1], '', DEFAULT_EVENTS, ''))
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

-- FCALL notifylist_take_counts 0 <secret> <databases> <proxy counter>: the events of each op that
-- the proxy's writes pushed (see notifylist_write), summed over every database, and removed:
-- atomically, so that each is counted by the proxy once. Returns op, count, op, count, ...
local function notifylist_take_counts(_, argv)
  if not from_proxy(argv[1]) then return not_from_proxy() end
  local databases, prefix = tonumber(argv[2]), argv[3] .. ':'
  local totals, ops = {}, {}
  for db = 0, databases - 1 do
    redis.call('SELECT', db)
    local fields = redis.call('HGETALL', STATS)
    local taken = {}
    for i = 1, #fields, 2 do
      if starts_with(fields[i], prefix) then
        local op = string.sub(fields[i], #prefix + 1)
        if not totals[op] then
          totals[op] = 0
          ops[#ops + 1] = op
        end
        totals[op] = totals[op] + tonumber(fields[i + 1])
        taken[#taken + 1] = fields[i]
      end
    end
    if #taken > 0 then
      local sum = 0
      for i = 2, #fields, 2 do
        if starts_with(fields[i - 1], prefix) then sum = sum + tonumber(fields[i]) end
      end
      redis.call('HDEL', STATS, unpack(taken))
      redis.call('HINCRBY', STATS, 'events', sum)
    end
  end
  local reply = {}
  for _, op in ipairs(ops) do
    reply[#reply + 1] = op
    reply[#reply + 1] = totals[op]
  end
  return reply
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

-- (The proxy's counter is for its writes only.)
local function write_denyoom(keys, argv)
  local reply = notifylist_write(keys, argv, DENYOOM_WRITES)
  context.counter = nil
  return reply
end

local function write_others(keys, argv)
  local reply = notifylist_write(keys, argv, OTHER_WRITES)
  context.counter = nil
  return reply
end

-- Redis refuses some commands above maxmemory (denyoom: SET, COPY, RESTORE, ...) and not others
-- (DEL, EXPIRE, FLUSHALL, SWAPDB, ...): each runs through a function that is refused exactly then.
local ALWAYS = { 'no-writes', 'allow-stale', 'allow-oom' }
redis.register_function('notifylist_write', write_denyoom)
redis.register_function{ function_name = 'notifylist_write_allow_oom', callback = write_others, flags = { 'allow-oom' } }
redis.register_function('notifylist_expired', notifylist_expired)
-- (Memory is at its limit when keys are evicted: the event must still be pushed.)
redis.register_function{ function_name = 'notifylist_evicted', callback = notifylist_evicted, flags = { 'allow-oom' } }
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
