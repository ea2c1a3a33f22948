#ifndef CFEDREC_GFSHARE_SHIM_H
#define CFEDREC_GFSHARE_SHIM_H
// libgfshare (Debian: libgfshare-dev, pkg-config "libgfshare"): Shamir secret sharing over GF(2^8),
// byte-wise, share numbers 1...255.
#include <libgfshare.h>

// The library's randomness hook is a mutable C global; Swift touches it only through these two adapters,
// once, from FedRecSecurity's `GFShare.initialisation` (a `static let`).
static inline void cfedrec_gfshare_set_fill_rand(gfshare_rand_func_t fill) { gfshare_fill_rand = fill; }
static inline gfshare_rand_func_t cfedrec_gfshare_fill_rand(void) { return gfshare_fill_rand; }
#endif
