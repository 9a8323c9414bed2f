// Everything is in include/prefetch.h (static inline); SwiftPM needs a source file per C target.
#include "prefetch.h"
