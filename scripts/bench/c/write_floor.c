/* The module API's floor for INGEST's write path (the "ingest" benchmark):
 * the Redis calls INGEST makes for a batch, and nothing else. No JSON, no
 * dates, no key building, no index: the benchmark hands it the batch
 * already parsed and summed, as Redis strings.
 *
 *   FLOOR.APPLY nkeys [key nfields [field delta] ...] ... nids [current previous id] ...
 *
 * Per key, as INGEST does: open it for writing, check it is a hash, read
 * each counter (RedisModule_HashGet) and check the sum fits, then write
 * each new value (RedisModule_HashSet), replicate the effect (HINCRBY for
 * one field, HSET key f v ... for several) and fire the keyspace event.
 * Per id: look it up in its current and previous dedup shards
 * (RedisModule_HashGet EXISTS), then remember it (RedisModule_HashSet), one
 * replicated HSET per shard. Everything is checked before the first write,
 * as INGEST must. */
#include "redismodule.h"
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHARDS 256
#define SLOTS 1024 /* open addressing over shard names, a power of two */

typedef struct {
    RedisModuleString *name;
    RedisModuleKey *key;
    RedisModuleString **argv; /* name, then id 1 id 1 ... */
    int argc;
} Shard;

static uint64_t fnv(const char *p, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return h;
}

/* The shard named `name`, opened on first use; found by hash, as INGEST's
 * store finds the keys it holds open. */
static int find_shard(RedisModuleCtx *ctx, Shard *shards, int *slots, int *n, RedisModuleString *name) {
    size_t len;
    const char *p = RedisModule_StringPtrLen(name, &len);
    for (uint64_t i = fnv(p, len) & (SLOTS - 1);; i = (i + 1) & (SLOTS - 1)) {
        int at = slots[i];
        if (at < 0) {
            if (*n == MAX_SHARDS) return -1;
            slots[i] = *n;
            shards[*n].name = name;
            shards[*n].key = RedisModule_OpenKey(ctx, name, REDISMODULE_READ | REDISMODULE_WRITE);
            shards[*n].argv = NULL;
            shards[*n].argc = 0;
            return (*n)++;
        }
        size_t l;
        const char *q = RedisModule_StringPtrLen(shards[at].name, &l);
        if (l == len && memcmp(p, q, len) == 0) return at;
    }
}

/* INGEST writes this field into each new shard: a value longer than
 * hash-max-listpack-value makes Redis keep the shard as a hash table. */
#define ABOUT_FIELD "listingstats about"
#define ABOUT "dedup shard of LISTINGSTATS: the other fields are event ids seen in this generation; no TTL, the module deletes it two windows on"

static int apply(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    RedisModule_AutoMemory(ctx);
    long long nkeys;
    int at = 1;
    if (argc < 3 || RedisModule_StringToLongLong(argv[at++], &nkeys) != REDISMODULE_OK)
        return RedisModule_WrongArity(ctx);
    /* Check pass: every key a hash, every counter an integer, every sum in range. */
    RedisModuleKey **keys = RedisModule_Alloc(sizeof(*keys) * (nkeys ? nkeys : 1));
    long long *values = RedisModule_Alloc(sizeof(long long) * (argc / 2 + 1));
    int first = at, v = 0;
    for (long long k = 0; k < nkeys; k++) {
        RedisModuleString *name = argv[at++];
        long long nf;
        RedisModule_StringToLongLong(argv[at++], &nf);
        RedisModuleKey *key = RedisModule_OpenKey(ctx, name, REDISMODULE_READ | REDISMODULE_WRITE);
        int type = RedisModule_KeyType(key);
        if (type != REDISMODULE_KEYTYPE_EMPTY && type != REDISMODULE_KEYTYPE_HASH)
            return RedisModule_ReplyWithError(ctx, REDISMODULE_ERRORMSG_WRONGTYPE);
        keys[k] = key;
        for (long long f = 0; f < nf; f++, at += 2) {
            long long delta, cur = 0;
            RedisModule_StringToLongLong(argv[at + 1], &delta);
            if (type == REDISMODULE_KEYTYPE_HASH) {
                RedisModuleString *old = NULL;
                RedisModule_HashGet(key, REDISMODULE_HASH_NONE, argv[at], &old, NULL);
                if (old && RedisModule_StringToLongLong(old, &cur) != REDISMODULE_OK)
                    return RedisModule_ReplyWithError(ctx, "ERR hash value is not an integer");
                if (old) RedisModule_FreeString(ctx, old);
            }
            if ((delta > 0 && cur > LLONG_MAX - delta) || (delta < 0 && cur < LLONG_MIN - delta))
                return RedisModule_ReplyWithError(ctx, "ERR increment or decrement would overflow");
            values[v++] = cur + delta;
        }
    }
    long long nids = 0;
    if (at < argc) RedisModule_StringToLongLong(argv[at++], &nids);
    Shard shards[MAX_SHARDS];
    int slots[SLOTS];
    memset(slots, -1, sizeof(slots));
    int nshards = 0, fresh = 0;
    int *owner = RedisModule_Alloc(sizeof(int) * (nids ? nids : 1));
    int ids_at = at;
    for (long long i = 0; i < nids; i++, at += 3) {
        int cur = find_shard(ctx, shards, slots, &nshards, argv[at]);
        int prev = find_shard(ctx, shards, slots, &nshards, argv[at + 1]);
        if (cur < 0 || prev < 0) return RedisModule_ReplyWithError(ctx, "ERR too many shards");
        int seen = 0;
        for (int s = 0; s < 2 && !seen; s++) {
            RedisModuleKey *key = shards[s == 0 ? cur : prev].key;
            if (RedisModule_KeyType(key) == REDISMODULE_KEYTYPE_HASH)
                RedisModule_HashGet(key, REDISMODULE_HASH_EXISTS, argv[at + 2], &seen, NULL);
        }
        owner[i] = seen ? -1 : cur;
        if (!seen) shards[cur].argc++;
        fresh += !seen;
    }
    /* Write pass. */
    at = first;
    v = 0;
    for (long long k = 0; k < nkeys; k++) {
        RedisModuleString *name = argv[at++];
        long long nf;
        RedisModule_StringToLongLong(argv[at++], &nf);
        RedisModuleString **rep = RedisModule_Alloc(sizeof(*rep) * (1 + 2 * nf));
        rep[0] = name;
        for (long long f = 0; f < nf; f++, at += 2) {
            RedisModuleString *value = RedisModule_CreateStringFromLongLong(ctx, values[v++]);
            RedisModule_HashSet(keys[k], REDISMODULE_HASH_NONE, argv[at], value, NULL);
            rep[1 + 2 * f] = argv[at];
            rep[2 + 2 * f] = value;
        }
        if (nf == 1)
            RedisModule_Replicate(ctx, "HINCRBY", "ss", name, argv[at - 2], argv[at - 1]);
        else
            RedisModule_Replicate(ctx, "HSET", "v", rep, (size_t)(1 + 2 * nf));
        RedisModule_NotifyKeyspaceEvent(ctx, REDISMODULE_NOTIFY_HASH, "hincrby", name);
        RedisModule_Free(rep);
    }
    RedisModuleString *one = RedisModule_CreateString(ctx, "1", 1);
    RedisModuleString *about_field = RedisModule_CreateString(ctx, ABOUT_FIELD, strlen(ABOUT_FIELD));
    RedisModuleString *about = RedisModule_CreateString(ctx, ABOUT, strlen(ABOUT));
    for (int s = 0; s < nshards; s++) {
        if (shards[s].argc == 0) continue;
        shards[s].argv = RedisModule_Alloc(sizeof(RedisModuleString *) * (3 + 2 * shards[s].argc));
        shards[s].argv[0] = shards[s].name;
        shards[s].argc = 1;
        if (RedisModule_KeyType(shards[s].key) == REDISMODULE_KEYTYPE_EMPTY) {
            RedisModule_HashSet(shards[s].key, REDISMODULE_HASH_NONE, about_field, about, NULL);
            shards[s].argv[shards[s].argc++] = about_field;
            shards[s].argv[shards[s].argc++] = about;
        }
    }
    at = ids_at;
    for (long long i = 0; i < nids; i++, at += 3) {
        if (owner[i] < 0) continue;
        Shard *sh = &shards[owner[i]];
        RedisModule_HashSet(sh->key, REDISMODULE_HASH_NONE, argv[at + 2], one, NULL);
        sh->argv[sh->argc++] = argv[at + 2];
        sh->argv[sh->argc++] = one;
    }
    for (int s = 0; s < nshards; s++) {
        if (!shards[s].argv) continue;
        RedisModule_Replicate(ctx, "HSET", "v", shards[s].argv, (size_t)shards[s].argc);
        RedisModule_NotifyKeyspaceEvent(ctx, REDISMODULE_NOTIFY_HASH, "hset", shards[s].name);
        RedisModule_Free(shards[s].argv);
    }
    RedisModule_Free(owner);
    RedisModule_Free(values);
    RedisModule_Free(keys);
    RedisModule_ReplyWithArray(ctx, 2);
    RedisModule_ReplyWithLongLong(ctx, v);
    return RedisModule_ReplyWithLongLong(ctx, fresh);
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv;
    (void)argc;
    if (RedisModule_Init(ctx, "writefloor", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR)
        return REDISMODULE_ERR;
    return RedisModule_CreateCommand(ctx, "floor.apply", apply, "write deny-oom", 0, 0, 0);
}
