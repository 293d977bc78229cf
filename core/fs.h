/* Small file-system helpers shared by storage/, tls/ and tools/. */
#ifndef UETCD_CORE_FS_H
#define UETCD_CORE_FS_H

#include <sys/types.h>

/* Creates `dir` and every missing parent with `mode` (as mkdir -p). 0 or -errno
 * (-ENAMETOOLONG past PATH_MAX). */
int fs_mkdirs(const char *dir, mode_t mode);

#endif
