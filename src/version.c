#include "version.h"

const char version_string[] = SUBMITD_VERSION;
const char version_commit[] = SUBMITD_COMMIT;
