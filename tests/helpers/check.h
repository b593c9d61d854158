/* CHECKF: a CUnit assertion that says why it failed, with printf-style context. */
#ifndef ANNOTATE_TESTS_CHECK_H
#define ANNOTATE_TESTS_CHECK_H

#define CHECKF(cond, ...) check_impl(!!(cond), __LINE__, __FILE__, __VA_ARGS__)
void check_impl(int ok, int line, const char *file, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
