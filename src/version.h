/*
 * The version (debian/changelog's) and the commit the binaries were built
 * from. Only version.c is compiled with them, so a commit rebuilds one
 * object, not all.
 */
#ifndef SUBMITD_VERSION_H
#define SUBMITD_VERSION_H

extern const char version_string[]; /* "0.1.0" */
extern const char version_commit[]; /* 12 hex digits, or "unknown" outside git */

#endif
