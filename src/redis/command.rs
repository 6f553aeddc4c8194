//! Registering commands and running them.
//!
//! [`dispatch`] is the one entry point Redis calls for every command. It
//! reads the arguments in place (no copies, no reference counting) and runs
//! the body under `catch_unwind`: a core error becomes the error reply, and
//! a panic, which would otherwise unwind into Redis and kill the server,
//! becomes an error reply and a line in the server log.

use std::ffi::CString;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::{raw, Context, RedisError, RedisValue, Status};
use smallvec::SmallVec;

use super::string::lent_bytes;
use crate::stats;
use listingstats_core::Result;

/// A module command: its metadata next to its code.
pub trait Command {
    /// Full name, lower case, e.g. `listingstats.incr`.
    const NAME: &'static str;
    /// `RedisModule_CreateCommand` flags, e.g. `write deny-oom`.
    const FLAGS: &'static str;
    /// ACL categories (Redis 7.2+, Valkey), e.g. `write hash fast`; the
    /// module's own `listingstats` category is added where the server can
    /// create categories (Redis 7.4+, Valkey 8+). Where it cannot, the
    /// module's own per-key checks still refuse what the native command
    /// would (see `acl.rs`).
    const ACL: &'static str;
    /// What COMMAND DOCS and COMMAND INFO show.
    const DOCS: Docs;
    /// Key positions `(first, last, step)` of keys given as arguments
    /// (FOLLOW's stream), so Redis Cluster routes by them and ACL checks
    /// them; `(0, 0, 0)` for commands whose keys are all computed.
    const KEYS: (i32, i32, i32) = (0, 0, 0);
    /// The argument (1 = the first after the name) Redis Cluster routes by
    /// as if it were a key, declared as a key spec flagged `NOT_KEY`: it is
    /// not ACL-checked as a key name. INCR and GET route by the listing,
    /// whose slot every day hash of the listing shares (`tagged` keys).
    const ROUTE_BY: Option<i32> = None;
    /// COMMAND DOCS tips for cluster clients, e.g. `request_policy:all_shards
    /// response_policy:all_succeeded` (space-separated); none by default: a
    /// keyless command then goes to any node.
    const TIPS: &'static str = "";
    /// Runs on the arguments after the command name.
    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue>;
}

/// Runs command `C`; its arguments start after the first `SKIP` words
/// (1: the command name; 2: a container and its subcommand).
extern "C" fn dispatch<C: Command, const SKIP: usize>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    stats::CALLS.add(1);
    let reply = catch_unwind(AssertUnwindSafe(|| {
        let argv: &[*mut raw::RedisModuleString] = if argv.is_null() {
            &[]
        } else {
            // SAFETY: Redis passes argc valid strings that outlive the call.
            unsafe { std::slice::from_raw_parts(argv, usize::try_from(argc).unwrap_or(0)) }
        };
        // SAFETY: the argument strings live until this command returns,
        // and `args` does not escape it.
        let args: SmallVec<[&[u8]; 16]> = argv
            .iter()
            .skip(SKIP)
            .map(|&s| unsafe { lent_bytes(s) })
            .collect();
        C::run(&context, &args)
    }));
    let reply = match reply {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            stats::ERRORS.add(1);
            Err(RedisError::String(err.reply_text()))
        }
        Err(panic) => {
            stats::ERRORS.add(1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            context.log_warning(&format!(
                "listingstats: internal error in {}: {what}",
                C::NAME
            ));
            Err(RedisError::Str(
                "ERR listingstats internal error, see the server log",
            ))
        }
    };
    context.reply(reply) as c_int
}

/// Registers one command. Key positions are 0: every key a command touches
/// is computed from its arguments, and checked against ACLs by the command.
pub fn register<C: Command>(ctx: &Context) -> Status {
    let (Ok(name), Ok(flags)) = (CString::new(C::NAME), CString::new(C::FLAGS)) else {
        return Status::Err;
    };
    // SAFETY: called from OnLoad with live strings; Redis copies them.
    let created = unsafe {
        api!(RedisModule_CreateCommand)(
            ctx.ctx,
            name.as_ptr(),
            Some(dispatch::<C, 1>),
            flags.as_ptr(),
            C::KEYS.0,
            C::KEYS.1,
            C::KEYS.2,
        )
    };
    if created != raw::REDISMODULE_OK as c_int {
        ctx.log_warning(&format!("listingstats: could not register {}", C::NAME));
        return Status::Err;
    }
    if set_acl_categories(ctx, &name, C::ACL) == Status::Err {
        return Status::Err;
    }
    set_info(ctx, C::NAME, &C::DOCS, C::ROUTE_BY, C::TIPS)
}

/// Whether the server accepted the `listingstats` ACL category.
static OWN_CATEGORY: AtomicBool = AtomicBool::new(false);

/// Creates the `listingstats` ACL category, where the server can (call
/// once, before registering commands).
pub fn add_own_category(ctx: &Context) {
    // SAFETY: called from OnLoad, before any command is registered.
    let added = unsafe {
        (*std::ptr::addr_of!(raw::RedisModule_AddACLCategory))
            .map(|add| add(ctx.ctx, c"listingstats".as_ptr()) == raw::REDISMODULE_OK as c_int)
    };
    OWN_CATEGORY.store(added == Some(true), Ordering::Relaxed);
}

fn set_acl_categories(ctx: &Context, name: &CString, categories: &str) -> Status {
    if !has_api!(RedisModule_GetCommand) || !has_api!(RedisModule_SetCommandACLCategories) {
        return Status::Ok; // Redis 7.0: no categories; the per-key checks remain.
    }
    let mut all = categories.to_string();
    if OWN_CATEGORY.load(Ordering::Relaxed) {
        all.push_str(" listingstats");
    }
    let Ok(all) = CString::new(all) else {
        return Status::Err;
    };
    // SAFETY: OnLoad, after CreateCommand: the command exists; Redis copies
    // what it keeps.
    let ok = unsafe {
        let command = api!(RedisModule_GetCommand)(ctx.ctx, name.as_ptr());
        !command.is_null()
            && api!(RedisModule_SetCommandACLCategories)(command, all.as_ptr())
                == raw::REDISMODULE_OK as c_int
    };
    if ok {
        Status::Ok
    } else {
        ctx.log_warning(&format!(
            "listingstats: could not set ACL categories of {}",
            name.to_string_lossy()
        ));
        Status::Err
    }
}

/// What `COMMAND DOCS` and `COMMAND INFO` show for a command: declared
/// next to its code as a `const`.
pub struct Docs {
    pub summary: &'static str,
    pub complexity: &'static str,
    pub since: &'static str,
    /// Redis's arity: the argument count with the command name; negative
    /// for "at least".
    pub arity: i32,
    pub args: &'static [Arg],
}

/// One argument of a command, as `COMMAND DOCS` describes it.
pub struct Arg {
    pub name: &'static str,
    pub kind: Kind,
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
}

pub enum Kind {
    String,
    Integer,
    Double,
    UnixTime,
    PureToken,
    OneOf(&'static [Arg]),
}

impl Arg {
    pub const fn new(name: &'static str, kind: Kind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
        }
    }
    pub const fn string(name: &'static str) -> Arg {
        Arg::new(name, Kind::String)
    }
    pub const fn integer(name: &'static str) -> Arg {
        Arg::new(name, Kind::Integer)
    }
    /// A keyword alone, e.g. `STRICT`.
    pub const fn flag(token: &'static str) -> Arg {
        Arg::new(token, Kind::PureToken).token(token).optional()
    }
    pub const fn token(mut self, token: &'static str) -> Arg {
        self.token = Some(token);
        self
    }
    pub const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }
    pub const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }
}

/// The command-info layout this module was built against.
static INFO_VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Owns the C strings and arrays of a raw command info until Redis has
/// copied them (`RedisModule_SetCommandInfo` copies everything).
#[derive(Default)]
struct Keep {
    strings: Vec<CString>,
    arrays: Vec<Vec<raw::RedisModuleCommandArg>>,
    specs: Vec<raw::RedisModuleCommandKeySpec>,
}

impl Keep {
    fn c(&mut self, s: &str) -> *const std::os::raw::c_char {
        let c = CString::new(s).unwrap_or_default();
        let p = c.as_ptr();
        self.strings.push(c);
        p
    }

    fn c_opt(&mut self, s: Option<&str>) -> *const std::os::raw::c_char {
        s.map_or(std::ptr::null(), |s| self.c(s))
    }

    /// One key spec, `NOT_KEY` at argument `pos`, and the terminator; NULL
    /// without a position.
    fn route_spec(&mut self, pos: Option<i32>) -> *mut raw::RedisModuleCommandKeySpec {
        let Some(pos) = pos else {
            return std::ptr::null_mut();
        };
        // SAFETY: all-zero is a valid spec (and, with begin_search_type 0,
        // the terminator Redis looks for).
        let mut spec: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
        spec.notes = self.c("the listing id: routed by its slot, not a key name");
        // Redis wants one access flag; the listing itself is never accessed.
        spec.flags = u64::from(raw::REDISMODULE_CMD_KEY_NOT_KEY | raw::REDISMODULE_CMD_KEY_RO);
        spec.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
        spec.bs.index.pos = pos;
        spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
        spec.fk.range.lastkey = 0;
        spec.fk.range.keystep = 1;
        spec.fk.range.limit = 0;
        // SAFETY: as above; the zeroed second entry ends the array.
        self.specs = vec![spec, unsafe { std::mem::zeroed() }];
        self.specs.as_mut_ptr()
    }

    /// The args as a NULL-name-terminated array Redis reads.
    fn args(&mut self, args: &[Arg]) -> *mut raw::RedisModuleCommandArg {
        if args.is_empty() {
            return std::ptr::null_mut();
        }
        let mut out: Vec<raw::RedisModuleCommandArg> = Vec::with_capacity(args.len() + 1);
        for a in args {
            let (kind, sub) = match &a.kind {
                Kind::String => (
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                    &[][..],
                ),
                Kind::Integer => (
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                    &[][..],
                ),
                Kind::Double => (
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
                    &[][..],
                ),
                Kind::UnixTime => (
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_UNIX_TIME,
                    &[][..],
                ),
                Kind::PureToken => (
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
                    &[][..],
                ),
                Kind::OneOf(s) => (
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
                    *s,
                ),
            };
            let mut flags = 0;
            if a.optional {
                flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
            }
            if a.multiple {
                flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
            }
            let subargs = self.args(sub);
            out.push(raw::RedisModuleCommandArg {
                name: self.c(a.name),
                type_: kind,
                key_spec_index: -1,
                token: self.c_opt(a.token),
                summary: std::ptr::null(),
                since: std::ptr::null(),
                flags: flags as c_int,
                deprecated_since: std::ptr::null(),
                subargs,
                display_text: std::ptr::null(),
            });
        }
        // SAFETY: an all-zero arg (NULL name) ends the array, as Redis expects.
        out.push(unsafe { std::mem::zeroed() });
        let p = out.as_mut_ptr();
        self.arrays.push(out);
        p
    }
}

/// Sets the `COMMAND DOCS`/`COMMAND INFO` of the command named `name`
/// (`parent|sub` for a subcommand).
fn set_info(ctx: &Context, name: &str, docs: &Docs, route_by: Option<i32>, tips: &str) -> Status {
    let Ok(c_name) = CString::new(name) else {
        return Status::Err;
    };
    let mut keep = Keep::default();
    let mut info = raw::RedisModuleCommandInfo {
        version: &INFO_VERSION,
        summary: keep.c(docs.summary),
        complexity: keep.c(docs.complexity),
        since: keep.c(docs.since),
        history: std::ptr::null_mut(),
        tips: if tips.is_empty() {
            std::ptr::null()
        } else {
            keep.c(tips)
        },
        arity: docs.arity,
        key_specs: keep.route_spec(route_by),
        args: keep.args(docs.args),
    };
    // SAFETY: OnLoad, the command exists; every pointer in `info` lives in
    // `keep` until after the call, and Redis copies what it keeps.
    let ok = unsafe {
        let command = api!(RedisModule_GetCommand)(ctx.ctx, c_name.as_ptr());
        !command.is_null()
            && api!(RedisModule_SetCommandInfo)(command, &mut info) == raw::REDISMODULE_OK as c_int
    };
    drop(keep);
    if ok {
        Status::Ok
    } else {
        ctx.log_warning(&format!(
            "listingstats: could not set the command info of {name}"
        ));
        Status::Err
    }
}

/// The arity of a subcommand form (one more word: the subcommand's name).
const fn sub_arity(arity: i32) -> i32 {
    if arity < 0 {
        arity - 1
    } else {
        arity + 1
    }
}

/// Registers the container `name` (e.g. `listingstats.metric`), whose
/// subcommands [`register_sub`] adds.
pub fn register_container(ctx: &Context, name: &str, summary: &'static str) -> Status {
    let Ok(c_name) = CString::new(name) else {
        return Status::Err;
    };
    // SAFETY: OnLoad; a NULL handler makes a container command.
    let created = unsafe {
        api!(RedisModule_CreateCommand)(ctx.ctx, c_name.as_ptr(), None, c"".as_ptr(), 0, 0, 0)
    };
    if created != raw::REDISMODULE_OK as c_int {
        ctx.log_warning(&format!("listingstats: could not register {name}"));
        return Status::Err;
    }
    let docs = Docs {
        summary,
        complexity: "Depends on subcommand.",
        since: "0.1.0",
        arity: -2,
        args: &[],
    };
    set_info(ctx, name, &docs, None, "")
}

/// Registers `C` as subcommand `sub` of `parent` (its `NAME` stays a
/// top-level alias, registered by [`register`]).
pub fn register_sub<C: Command>(ctx: &Context, parent: &str, sub: &str) -> Status {
    let (Ok(c_parent), Ok(c_sub), Ok(flags)) = (
        CString::new(parent),
        CString::new(sub),
        CString::new(C::FLAGS),
    ) else {
        return Status::Err;
    };
    // SAFETY: OnLoad; the parent container exists; Redis copies the strings.
    let created = unsafe {
        let parent_cmd = api!(RedisModule_GetCommand)(ctx.ctx, c_parent.as_ptr());
        !parent_cmd.is_null()
            && api!(RedisModule_CreateSubcommand)(
                parent_cmd,
                c_sub.as_ptr(),
                Some(dispatch::<C, 2>),
                flags.as_ptr(),
                0,
                0,
                0,
            ) == raw::REDISMODULE_OK as c_int
    };
    let full = format!("{parent}|{sub}");
    if !created {
        ctx.log_warning(&format!("listingstats: could not register {full}"));
        return Status::Err;
    }
    let Ok(c_full) = CString::new(full.as_str()) else {
        return Status::Err;
    };
    let docs = Docs {
        arity: sub_arity(C::DOCS.arity),
        ..C::DOCS
    };
    if set_acl_categories(ctx, &c_full, C::ACL) == Status::Err {
        return Status::Err;
    }
    set_info(ctx, &full, &docs, None, C::TIPS)
}
