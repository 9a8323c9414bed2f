// The C interface is implemented in Swift (Sources/SamepageCABI); this target only carries
// samepage.h, so that the Swift implementation is checked against the very header C sees.
#include "samepage.h"
