// Debian's SQLite (libsqlite3-dev), for the coordinator's durable decision log.
#include <sqlite3.h>
// SQLITE_TRANSIENT is a macro over a cast Swift cannot import.
static inline void (*mco_sqlite_transient(void))(void *) { return SQLITE_TRANSIENT; }
