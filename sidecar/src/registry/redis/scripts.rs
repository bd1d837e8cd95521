//! The Lua scripts behind leases: each runs atomically on the server, so a
//! lease is taken, extended or released in one round trip without racing
//! another instance.

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
