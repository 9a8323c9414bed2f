// A hint to the CPU, for the store's lookups: Swift has no prefetch of its own. The core asks
// for the table slot of a page a few pages ahead, so that the slot's cache miss (the tables of a
// large store do not fit in the caches) overlaps the work on the pages before it.
#ifndef SAMEPAGE_PREFETCH_H
#define SAMEPAGE_PREFETCH_H

static inline void sp_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
