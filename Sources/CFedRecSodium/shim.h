#ifndef CFEDREC_SODIUM_SHIM_H
#define CFEDREC_SODIUM_SHIM_H
// libsodium (Debian: libsodium-dev, pkg-config "libsodium").
#include <sodium.h>
#endif
