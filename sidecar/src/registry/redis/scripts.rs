//! The Lua scripts behind leases and the conditional forget: each runs
//! atomically on the server, so a lease is taken, extended or released, and
//! an app forgotten only if nobody used it since, in one round trip without
//! racing another instance.

use std::sync::LazyLock;

use redis::Script;

/// Takes lease `KEYS[1]` for holder `ARGV[1]` for `ARGV[2]` ms when it is free,
/// extends it when `ARGV[1]` already holds it; 1 when `ARGV[1]` holds it after.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Deletes lease `KEYS[1]` only if `ARGV[1]` holds it; 1 when deleted.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Forgets app `ARGV[1]` (member of the index `KEYS[1]`, hash `KEYS[2]`)
/// only if its last access is before `ARGV[2]` ms; 1 when forgotten or
/// absent, 0 when an access at or after `ARGV[2]` keeps it.
pub static FORGET_IF_BEFORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
",
    )
});
