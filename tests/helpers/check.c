/* check_impl: see check.h. */
#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdio.h>

#include "check.h"

void check_impl(int ok, int line, const char *file, const char *fmt, ...)
{
    if (ok) {
        CU_assertImplementation(CU_TRUE, (unsigned)line, "", file, "", CU_FALSE);
        return;
    }
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    CU_assertImplementation(CU_FALSE, (unsigned)line, msg, file, "", CU_FALSE);
}
