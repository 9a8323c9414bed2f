/*
 * A C program using libsamepage through pkg-config:
 *
 *   cc -o samepage-demo samepage-demo.c $(pkg-config --cflags --libs samepage)
 *   ./samepage-demo /path/to/samepaged.sock
 *
 * It stores the same bytes twice and checks they are stored once, maps them zero-copy, then
 * merges a few hundred equal pages of its own memory in place and unmerges them. It prints one
 * line per step and "ok" at the end; any failure exits 1 with the library's message.
 */
#include <samepage.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                        \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ < 0) {                                                                     \
            fprintf(stderr, "%s failed: %s (%d)\n", #call, samepage_strerror(rc_), rc_);   \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define EXPECT(cond)                                                                       \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "expectation failed: %s\n", #cond);                            \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    samepage_t *sp;
    CHECK(samepage_connect(argc > 1 ? argv[1] : NULL, &sp));

    /* The object store: the same 1 MiB twice is stored once. */
    size_t len = 1 << 20;
    unsigned char *data = malloc(len);
    for (size_t i = 0; i < len; i++) data[i] = (unsigned char)(i * 2654435761u >> 13);
    samepage_id_t a, b;
    CHECK(samepage_put(sp, data, len, &a));
    CHECK(samepage_put(sp, data, len, &b));
    EXPECT(memcmp(&a, &b, sizeof a) != 0);
    samepage_stats_t stats;
    CHECK(samepage_stats(sp, &stats));
    EXPECT(stats.pages_shared == 256 && stats.pages_sharing == 256);
    printf("put twice: pages_shared %lld pages_sharing %lld\n", (long long)stats.pages_shared, (long long)stats.pages_sharing);

    void *addr;
    size_t mapped;
    CHECK(samepage_map(sp, &a, SAMEPAGE_MAP_READONLY, &addr, &mapped));
    EXPECT(mapped == len && memcmp(addr, data, len) == 0);
    CHECK(samepage_unmap(sp, addr, mapped));
    CHECK(samepage_map(sp, &b, SAMEPAGE_MAP_COPY_ON_WRITE, &addr, &mapped));
    memset(addr, 0x55, 4096);                      /* a private copy; the store is unchanged */
    CHECK(samepage_unmap(sp, addr, mapped));
    CHECK(samepage_map(sp, &b, SAMEPAGE_MAP_READONLY, &addr, &mapped));
    EXPECT(memcmp(addr, data, len) == 0);
    CHECK(samepage_unmap(sp, addr, mapped));
    CHECK(samepage_delete(sp, &a));
    CHECK(samepage_delete(sp, &b));
    int rc = samepage_delete(sp, &a);
    EXPECT(rc == -ENOENT);
    printf("delete twice: %s\n", samepage_strerror(rc));
    printf("mapped, copied on write, deleted\n");

    /* A shared buffer: the object written in place, put without a copy; twice: stored once. */
    samepage_buffer_t *buf;
    void *place;
    CHECK(samepage_buffer_create(sp, len, &buf, &place));
    memcpy(place, data, len);
    CHECK(samepage_put_buffer(sp, buf, len, &a));
    CHECK(samepage_put_buffer(sp, buf, len, &b));
    CHECK(samepage_stats(sp, &stats));
    EXPECT(stats.pages_shared == 256 && stats.pages_sharing == 256);
    memset(place, 0, len);                         /* the buffer is ours again */
    CHECK(samepage_map(sp, &a, SAMEPAGE_MAP_READONLY, &addr, &mapped));
    EXPECT(mapped == len && memcmp(addr, data, len) == 0);
    CHECK(samepage_unmap(sp, addr, mapped));
    EXPECT(samepage_put_buffer(sp, buf, len + 4096, &a) == -EINVAL);
    CHECK(samepage_delete(sp, &a));
    CHECK(samepage_delete(sp, &b));
    samepage_buffer_free(buf);
    printf("shared buffer put twice: stored once\n");

    /* Mergeable memory: 256 equal pages of this process merge in place. */
    CHECK(samepage_set_param(sp, "run", 0));      /* scan synchronously below */
    EXPECT(samepage_set_param(sp, "no_such_knob", 1) == -EINVAL);
    CHECK(samepage_set_param(sp, "idle_rest_millisecs", 50));   /* Samepage's own knobs too */
    EXPECT(samepage_set_param(sp, "idle_rest_millisecs", 60001) == -EINVAL);
    size_t pages = 256, size = pages * 4096;
    unsigned char *memory = samepage_alloc(sp, size);
    EXPECT(memory != NULL);
    memset(memory, 0xcf, size);
    CHECK(samepage_madvise(sp, memory, size, SAMEPAGE_MADV_MERGEABLE));
    CHECK(samepage_scan(sp, 2));
    samepage_process_stats_t process;
    CHECK(samepage_process_stats(sp, &process));
    EXPECT(process.ksm_merging_pages == (int64_t)pages);
    CHECK(samepage_stats(sp, &stats));
    printf("merged in place: ksm_merging_pages %lld, pages_sharing %lld\n",
           (long long)process.ksm_merging_pages, (long long)stats.pages_sharing);
    memory[4096] = 1;                             /* copy on write, like a KSM page */
    EXPECT(memory[0] == 0xcf && memory[4096] == 1 && memory[8192] == 0xcf);
    CHECK(samepage_madvise(sp, memory, size, SAMEPAGE_MADV_UNMERGEABLE));
    CHECK(samepage_process_stats(sp, &process));
    EXPECT(process.ksm_merging_pages == 0);
    EXPECT(memory[0] == 0xcf && memory[4096] == 1);
    samepage_free(sp, memory, size);

    CHECK(samepage_set_memory_merge(sp, 1));
    EXPECT(samepage_get_memory_merge(sp) == 1);
    CHECK(samepage_set_memory_merge(sp, 0));
    EXPECT(samepage_get_memory_merge(sp) == 0);

    samepage_disconnect(sp);
    free(data);
    printf("ok\n");
    return 0;
}
