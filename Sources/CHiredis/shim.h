// Debian's hiredis (libhiredis-dev): only its protocol reader and command formatter are used;
// the I/O is mcpopt's own.
#include <hiredis/hiredis.h>
