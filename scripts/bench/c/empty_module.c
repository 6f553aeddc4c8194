/* The module API's own floor for the "tax" benchmark: a module whose
 * keyspace callback does nothing, subscribed to the classes named by its
 * argument ("all" or "hash"). What a notification costs any module. With
 * the argument "server" too, it also subscribes empty callbacks to the
 * server events listingstats follows (flush, swapdb, loading, config,
 * replication role): on servers with key events (Redis 7.2+, Valkey) every
 * deleted or overwritten key then walks the module's event listeners. */
#define REDISMODULE_EXPERIMENTAL_API
#include "redismodule.h"
#include <strings.h>

static void on_event(RedisModuleCtx *ctx, RedisModuleEvent e, uint64_t sub, void *data) {
    (void)ctx; (void)e; (void)sub; (void)data;
}

static int on_key(RedisModuleCtx *ctx, int type, const char *event, RedisModuleString *key) {
    (void)ctx; (void)type; (void)event; (void)key;
    return REDISMODULE_OK;
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_Init(ctx, "emptycb", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR)
        return REDISMODULE_ERR;
    int types = REDISMODULE_NOTIFY_ALL;
    for (int i = 0; i < argc; i++) {
        size_t len;
        const char *which = RedisModule_StringPtrLen(argv[i], &len);
        if (strcasecmp(which, "hash") == 0) types = REDISMODULE_NOTIFY_HASH;
        if (strcasecmp(which, "server") == 0) {
            RedisModule_SubscribeToServerEvent(ctx, RedisModuleEvent_FlushDB, on_event);
            RedisModule_SubscribeToServerEvent(ctx, RedisModuleEvent_SwapDB, on_event);
            RedisModule_SubscribeToServerEvent(ctx, RedisModuleEvent_Loading, on_event);
            RedisModule_SubscribeToServerEvent(ctx, RedisModuleEvent_Config, on_event);
            RedisModule_SubscribeToServerEvent(ctx, RedisModuleEvent_ReplicationRoleChanged, on_event);
        }
    }
    return RedisModule_SubscribeToKeyspaceEvents(ctx, types, on_key);
}
