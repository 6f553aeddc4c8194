/* The module API's own floor for the "tax" benchmark: a module whose
 * keyspace callback does nothing, subscribed to the classes named by its
 * argument ("all" or "hash"). What a notification costs any module. */
#define REDISMODULE_EXPERIMENTAL_API
#include "redismodule.h"
#include <strings.h>

static int on_key(RedisModuleCtx *ctx, int type, const char *event, RedisModuleString *key) {
    (void)ctx; (void)type; (void)event; (void)key;
    return REDISMODULE_OK;
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_Init(ctx, "emptycb", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR)
        return REDISMODULE_ERR;
    int types = REDISMODULE_NOTIFY_ALL;
    if (argc > 0) {
        size_t len;
        const char *which = RedisModule_StringPtrLen(argv[0], &len);
        if (strcasecmp(which, "hash") == 0) types = REDISMODULE_NOTIFY_HASH;
    }
    return RedisModule_SubscribeToKeyspaceEvents(ctx, types, on_key);
}
