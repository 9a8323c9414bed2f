// XXH3 from Debian's libxxhash. The *_dispatch entry points pick AVX2 at run time; the inline
// path that xxhash.h offers would be compiled by the Swift importer at -Os and run at half speed
// (design.md section 7), so Swift code only calls the dispatch functions.
#include <xxhash.h>
#include <xxh_x86dispatch.h>
