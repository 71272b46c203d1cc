/*
 * ui.c -- the bytes of the admin web page (src/admin/ui/index.html), built in.
 *
 * The assembler's .incbin copies the file into .rodata when this file is
 * compiled; CMake passes its absolute path as STRATA_ADMIN_UI_PATH and makes
 * this object depend on it, so an edit to the page rebuilds it. The length is
 * a second symbol computed by the assembler (end - start), so the page may
 * hold any byte; a NUL after the last byte (not counted) makes the array a C
 * string too. Both symbols are hidden: internal to libstrata, like every
 * non-static symbol here (-fvisibility=hidden only covers C definitions).
 *
 * This file is compiled without LTO (CMakeLists.txt): symbols defined in
 * top-level asm are not in an LTO object's symbol table, so an archive member
 * holding them only as LTO bytecode would never be pulled in by the linker.
 */
#include <stdint.h>

#include "admin/ui.h"

/* CMake gives the absolute path; a build that does not (the Makefile's fuzz
 * targets compile src/ by hand) runs from the top of the repository. */
#ifndef STRATA_ADMIN_UI_PATH
#define STRATA_ADMIN_UI_PATH "src/admin/ui/index.html"
#endif

#if SIZE_MAX == UINT64_MAX
#define UI_SIZE_DIRECTIVE ".quad"
#define UI_SIZE_ALIGN "8"
#elif SIZE_MAX == UINT32_MAX
#define UI_SIZE_DIRECTIVE ".long"
#define UI_SIZE_ALIGN "4"
#else
#error "size_t is neither 32 nor 64 bits"
#endif

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".globl admin_ui_html\n"
        ".hidden admin_ui_html\n"
        ".type admin_ui_html, %object\n"
        "admin_ui_html:\n"
        ".incbin \"" STRATA_ADMIN_UI_PATH "\"\n"
        ".Ladmin_ui_html_end:\n"
        ".byte 0\n"
        ".size admin_ui_html, . - admin_ui_html\n"
        ".balign " UI_SIZE_ALIGN "\n"
        ".globl admin_ui_html_len\n"
        ".hidden admin_ui_html_len\n"
        ".type admin_ui_html_len, %object\n"
        "admin_ui_html_len:\n" UI_SIZE_DIRECTIVE
        " .Ladmin_ui_html_end - admin_ui_html\n"
        ".size admin_ui_html_len, " UI_SIZE_ALIGN "\n"
        ".popsection\n");
