/*
 * samepage.h - the C interface of Samepage, a deduplicating shared-memory page store.
 *
 * Link with libsamepage (pkg-config: samepage). Every function that can fail returns 0 or a
 * negative errno; samepage_strerror() describes it. A samepage_t is one connection to
 * samepaged; it is safe to use from several threads (calls are serialised).
 *
 *   samepage_t *sp;
 *   if (samepage_connect(NULL, &sp) < 0) ...          NULL: $SAMEPAGE_SOCKET or the default path
 *   samepage_id_t id;
 *   samepage_put(sp, data, len, &id);                  equal pages are stored once
 *   void *addr; size_t n;
 *   samepage_map(sp, &id, SAMEPAGE_MAP_READONLY, &addr, &n);   zero-copy
 *   samepage_unmap(sp, addr, n);
 *   samepage_delete(sp, &id);
 *   samepage_disconnect(sp);
 *
 * Mergeable memory (KSM's semantics for this process's own memory):
 *   samepage_madvise(sp, addr, len, SAMEPAGE_MADV_MERGEABLE);
 *   samepage_scan(sp, 2);                              or let the scanner thread run
 */
#ifndef SAMEPAGE_H
#define SAMEPAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct samepage samepage_t;

/* An object id: 128 random bits, never derived from the content. */
typedef struct samepage_id {
    uint8_t bytes[16];
} samepage_id_t;

/* samepage_map flags */
#define SAMEPAGE_MAP_READONLY 0
#define SAMEPAGE_MAP_COPY_ON_WRITE 1

/* samepage_madvise advice (the values of MADV_MERGEABLE and MADV_UNMERGEABLE) */
#define SAMEPAGE_MADV_MERGEABLE 12
#define SAMEPAGE_MADV_UNMERGEABLE 13

/* The dedup domain's statistics, with KSM's names and meanings. */
typedef struct samepage_stats {
    int64_t pages_shared;
    int64_t pages_sharing;
    int64_t pages_unshared;
    int64_t pages_volatile;
    int64_t pages_scanned;
    int64_t pages_skipped;
    int64_t full_scans;
    int64_t stable_node_chains;
    int64_t stable_node_dups;
    int64_t ksm_zero_pages;
    int64_t general_profit;
} samepage_stats_t;

/* This process's figures, as /proc/PID/ksm_stat. */
typedef struct samepage_process_stats {
    int64_t ksm_rmap_items;
    int64_t ksm_zero_pages;
    int64_t ksm_merging_pages;
    int64_t ksm_process_profit;
    int64_t ksm_merge_any;
} samepage_process_stats_t;

int  samepage_connect(const char *socket_path, samepage_t **out);
void samepage_disconnect(samepage_t *sp);

int  samepage_put(samepage_t *sp, const void *data, size_t len, samepage_id_t *out_id);

/* Shared buffers: write an object in place, then put it without a copy (create, fill, put).
   *data points at len bytes (rounded up to whole pages, zero-filled) until samepage_buffer_free;
   the buffer may be rewritten as soon as samepage_put_buffer returns. */
typedef struct samepage_buffer samepage_buffer_t;
int  samepage_buffer_create(samepage_t *sp, size_t len, samepage_buffer_t **out, void **data);
int  samepage_put_buffer(samepage_t *sp, samepage_buffer_t *buf, size_t len, samepage_id_t *out_id);
void samepage_buffer_free(samepage_buffer_t *buf);
int  samepage_map(samepage_t *sp, const samepage_id_t *id, int flags, void **addr, size_t *len);
int  samepage_unmap(samepage_t *sp, void *addr, size_t len);
int  samepage_delete(samepage_t *sp, const samepage_id_t *id);

int  samepage_madvise(samepage_t *sp, void *addr, size_t len, int advice);
int  samepage_set_memory_merge(samepage_t *sp, int on);
int  samepage_get_memory_merge(samepage_t *sp);
void *samepage_alloc(samepage_t *sp, size_t len);
void samepage_free(samepage_t *sp, void *addr, size_t len);
int  samepage_scan(samepage_t *sp, unsigned full_scans);
/* pages_to_scan, sleep_millisecs, max_page_sharing, use_zero_pages, smart_scan, run,
   advisor_target_scan_time, advisor_min_pages_to_scan, advisor_max_pages_to_scan,
   vma_budget_percent, track_writes, unmap_stretches, idle_rest_millisecs
   (docs/mergeable-memory.md) */
int  samepage_set_param(samepage_t *sp, const char *name, uint64_t value);
int  samepage_stats(samepage_t *sp, samepage_stats_t *out);
int  samepage_process_stats(samepage_t *sp, samepage_process_stats_t *out);

/* A description of a negative return value; never NULL. */
const char *samepage_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
