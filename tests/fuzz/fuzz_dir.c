/*  The directory's table (common/mc_dir.c) as every client reads it from the broker: any bytes
    are refused or give a table whose every owner index is a node of it, which packs and reads
    back the same (version, nodes, shards, owners), and which turns into JSON. */
#include "fuzz.h"
#include "mc_dir.h"

#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_dir_t *dir = mc_dir_unpack(data, size);
    if (!dir)
        return 0;
    for (int i = 0; i < mc_dir_shards(dir); i++) {
        const mc_dir_shard_t *s = mc_dir_shard_at(dir, i);
        FUZZ_CHECK(s->node >= -1 && s->node < mc_dir_nodes(dir));
        FUZZ_CHECK(mc_dir_shard(dir, s->name, false) == s);
        uint64_t epoch;
        const mc_dir_node_t *owner = mc_dir_owner(dir, s->name, &epoch);
        FUZZ_CHECK(epoch == s->epoch && (owner == NULL) == (s->node < 0));
    }
    mc_dir_t *again = mc_dir_copy(dir);     //  by its packed form
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(mc_dir_version(again) == mc_dir_version(dir));
    FUZZ_CHECK(mc_dir_nodes(again) == mc_dir_nodes(dir) && mc_dir_shards(again) == mc_dir_shards(dir));
    for (int i = 0; i < mc_dir_shards(dir); i++) {
        const mc_dir_shard_t *a = mc_dir_shard_at(dir, i), *b = mc_dir_shard_at(again, i);
        FUZZ_CHECK(strcmp(a->name, b->name) == 0 && a->node == b->node && a->epoch == b->epoch && a->up == b->up);
    }
    char *json = mc_dir_json(dir);
    FUZZ_CHECK(json != NULL);
    free(json);
    mc_dir_destroy(&again);
    mc_dir_destroy(&dir);
    return 0;
}
