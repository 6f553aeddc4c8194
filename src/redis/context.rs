//! What a context tells: flags, databases, the clock, the caller, and which
//! API functions this server has.

use redis_module::{raw, Context, RedisValue};

use super::string::lent_bytes;

fn flags(ctx: &Context) -> u32 {
    // SAFETY: live context.
    unsafe { api!(RedisModule_GetContextFlags)(ctx.ctx) as u32 }
}

/// Whether the calling client speaks RESP3.
pub fn is_resp3(ctx: &Context) -> bool {
    flags(ctx) & raw::REDISMODULE_CTX_FLAGS_RESP3 != 0
}

/// Whether the caller can be blocked: not inside MULTI/EXEC, a script, or
/// another context that denies blocking.
pub fn can_block(ctx: &Context) -> bool {
    flags(ctx)
        & (raw::REDISMODULE_CTX_FLAGS_MULTI
            | raw::REDISMODULE_CTX_FLAGS_LUA
            | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING)
        == 0
}

/// Whether this server is a replica (it applies what its master sends).
pub fn is_replica(ctx: &Context) -> bool {
    flags(ctx) & raw::REDISMODULE_CTX_FLAGS_SLAVE != 0
}

/// Why this node may not write now outside a client's own command (a
/// timer, a cluster-bus message, a keyspace event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Clients are paused for writes: `CLIENT PAUSE` (WRITE or ALL),
    /// `FAILOVER`, `CLUSTER FAILOVER` on a replica of this master, a
    /// `SHUTDOWN` waiting for replicas. Redis asserts (and dies) when
    /// anything is propagated then.
    Paused,
    /// A replica (or a master just demoted): it applies only what its
    /// master sends.
    Replica,
    /// Loading an RDB or AOF.
    Loading,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Paused => "writes are paused",
            Hold::Replica => "this node is a replica",
            Hold::Loading => "the server is loading its data",
        }
    }
}

/// Whether work that runs outside a client's command may write now:
/// `None` when it may, else why not. The one rule every background
/// writer obeys (`slices` asks it before each writing slice).
pub fn write_hold(ctx: &Context) -> Option<Hold> {
    let f = flags(ctx);
    if f & raw::REDISMODULE_CTX_FLAGS_SLAVE != 0 {
        return Some(Hold::Replica);
    }
    if f & (raw::REDISMODULE_CTX_FLAGS_LOADING | raw::REDISMODULE_CTX_FLAGS_ASYNC_LOADING) != 0 {
        return Some(Hold::Loading);
    }
    // SAFETY: a plain call; the server's pause state (Redis 7.0: any
    // client pause; 7.2+ and Valkey: a pause that holds replication).
    if has_api!(RedisModule_AvoidReplicaTraffic)
        && unsafe { api!(RedisModule_AvoidReplicaTraffic)() } != 0
    {
        return Some(Hold::Paused);
    }
    None
}

/// The database the context has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: live context.
    unsafe { api!(RedisModule_GetSelectedDb)(ctx.ctx) }
}

/// Selects database `db`; false when it does not exist.
pub fn select_db(ctx: &Context, db: i32) -> bool {
    // SAFETY: live context; SelectDb fails for a database that does not exist.
    unsafe { api!(RedisModule_SelectDb)(ctx.ctx, db) == raw::REDISMODULE_OK as i32 }
}

/// Keys in the selected database.
pub fn db_size(ctx: &Context) -> u64 {
    // SAFETY: live context.
    unsafe { api!(RedisModule_DbSize)(ctx.ctx) }
}

/// The server's clock, in unix milliseconds.
pub fn now_ms() -> i64 {
    // SAFETY: plain API call.
    unsafe { api!(RedisModule_Milliseconds)() }
}

/// The name of the user running the command, if there is a client.
pub fn caller_name(ctx: &Context) -> Option<Vec<u8>> {
    // SAFETY: live context; the returned string is ours, copied, then freed.
    unsafe {
        let name = api!(RedisModule_GetCurrentUserName)(ctx.ctx);
        if name.is_null() {
            return None;
        }
        let bytes = lent_bytes(name).to_vec();
        api!(RedisModule_FreeString)(ctx.ctx, name);
        Some(bytes)
    }
}

/// The module API functions that appeared in Redis 7.0 and that the module
/// cannot work without, those this server lacks (Redis 6.2 and older).
pub fn missing_7_0_api() -> Vec<&'static str> {
    let mut missing = Vec::new();
    macro_rules! need {
        ($($name:ident),* $(,)?) => {
            $(if !has_api!($name) {
                missing.push(stringify!($name));
            })*
        };
    }
    need!(
        RedisModule_RegisterStringConfig,
        RedisModule_LoadConfigs,
        RedisModule_ACLCheckKeyPermissions,
        RedisModule_ACLCheckCommandPermissions,
        RedisModule_GetModuleUserFromUserName,
        RedisModule_GetCurrentUserName,
        RedisModule_ScanCursorCreate,
        RedisModule_BlockedClientMeasureTimeStart,
        RedisModule_SetCommandInfo,
    );
    missing
}

/// Loads the module's settings from the config file (after registering
/// them); false when the server refuses.
pub fn load_configs(ctx: &Context) -> bool {
    // SAFETY: called from OnLoad, as the API requires.
    unsafe { api!(RedisModule_LoadConfigs)(ctx.ctx) == raw::REDISMODULE_OK as i32 }
}

/// The text of a string reply from `Context::call`.
pub fn reply_text(v: &RedisValue) -> Option<String> {
    match v {
        RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s.clone()),
        RedisValue::BulkRedisString(s) => Some(s.to_string_lossy()),
        RedisValue::StringBuffer(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}
