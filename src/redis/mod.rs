//! The one layer that talks to the Redis module API.
//!
//! Every `unsafe` block of the module crate lives in this folder (the
//! global allocator, `alloc.rs`, aside): small RAII wrappers, one topic per
//! file. Everything above — commands, the index feed, configuration,
//! eviction, INFO — is safe Rust built on these.
//!
//! | file | wraps |
//! |---|---|
//! | `string.rs` | bytes of Redis strings |
//! | `context.rs` | context flags, databases, the clock, the caller, API presence |
//! | `key.rs` | an open key: type, hash fields, delete |
//! | `acl.rs` | permission checks as the equivalent native command |
//! | `store.rs` | the core's `CounterStore`, and the readers QUERY/GET use |
//! | `scan.rs` | a keyspace scan cursor |
//! | `stream.rs` | reading a stream after a position |
//! | `reply.rs` | writing a reply piece by piece |
//! | `blocked.rs` | a blocked client and the reply it collects |
//! | `slices.rs` | work run in slices on a timer (queries, index rebuilds) |
//! | `loop_watch.rs` | how long each pass of the server's event loop ran |
//! | `filter.rs` | on a cluster node, the command filter that drops the cached slots |
//! | `events.rs` | keyspace notifications and server events |
//! | `cluster.rs` | cluster mode, and the slots this node serves |
//! | `bus.rs` | messages between nodes over the cluster bus |
//! | `command.rs` | registering commands: dispatch, ACL categories, COMMAND DOCS |
//! | `info.rs` | the INFO section |
//!
//! Where a wrapper of the `redis-module` crate costs nothing measurable it
//! is used (typed timers, configuration, `Context::call`); raw calls remain
//! on measured hot paths, and say so.

/// Looks up a module API function pointer, which `RedisModule_Init` filled
/// in; a pointer this server lacks is a panic, which the command dispatcher
/// turns into an error reply.
macro_rules! api {
    ($name:ident) => {{
        // SAFETY: written once by RedisModule_Init before any command runs.
        #[allow(unused_unsafe)]
        let f = unsafe { *std::ptr::addr_of!(redis_module::raw::$name) };
        match f {
            Some(f) => f,
            None => panic!(concat!(
                stringify!($name),
                " is not available on this server"
            )),
        }
    }};
}

/// Whether the server has this API function (filled in by RedisModule_Init).
macro_rules! has_api {
    ($name:ident) => {{
        // SAFETY: a plain read of a pointer written once by RedisModule_Init.
        #[allow(unused_unsafe)]
        let present = unsafe { (*std::ptr::addr_of!(redis_module::raw::$name)).is_some() };
        present
    }};
}

/// Module state on the main thread that is never dropped.
///
/// `thread_local!` destroys its values when the thread exits, and Redis's
/// main thread "exits" inside `exit()` (SHUTDOWN, SIGTERM): a destructor
/// that then touches another thread-local (a blocked client's, the index's)
/// or Redis aborts the process (status 134) instead of a clean exit. What
/// is declared here is wrapped in `ManuallyDrop`, which registers no
/// destructor: the process's exit frees the memory. Every piece of module
/// state that owns something with a `Drop` (works, blocked clients, maps)
/// is declared with this; plain `Cell`s of numbers may use `thread_local!`
/// (nothing to drop). `tests/source_map.rs` checks that.
macro_rules! resident {
    () => {};
    ($(#[$attr:meta])* static $name:ident: $t:ty = const $init:block; $($rest:tt)*) => {
        thread_local! {
            $(#[$attr])* static $name: std::mem::ManuallyDrop<$t> =
                const { std::mem::ManuallyDrop::new($init) };
        }
        resident! { $($rest)* }
    };
    ($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        thread_local! {
            $(#[$attr])* static $name: std::mem::ManuallyDrop<$t> =
                std::mem::ManuallyDrop::new($init);
        }
        resident! { $($rest)* }
    };
}

pub mod acl;
pub mod blocked;
pub mod bus;
pub mod cluster;
pub mod command;
pub mod context;
pub mod events;
pub mod filter;
pub mod info;
pub mod key;
pub mod loop_watch;
pub mod reader;
pub mod reply;
pub mod scan;
pub mod slices;
pub mod store;
pub mod stream;
pub mod string;
