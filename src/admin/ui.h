/*
 * ui.h -- the admin web page (GET /_strata/ui), embedded in the binary.
 *
 * The page is one self-contained file, src/admin/ui/index.html (HTML, CSS and
 * JavaScript inline; it loads nothing from elsewhere). ui.c puts its bytes in
 * .rodata at build time, so nothing is read from disk at run time; editing the
 * page rebuilds ui.c (CMakeLists.txt: OBJECT_DEPENDS).
 */
#ifndef STRATA_ADMIN_UI_H
#define STRATA_ADMIN_UI_H

#include <stddef.h>

/* The page's bytes (UTF-8; serve as `text/html; charset=utf-8`): exactly
 * admin_ui_html_len of them, followed by one NUL that is not counted. Both
 * are read-only, immutable and safe to read from any thread. */
extern const char admin_ui_html[];
extern const size_t admin_ui_html_len;

#endif
