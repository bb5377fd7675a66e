/* Minimal unit-test support for Postern's test-*.c programs.
 *
 * A test file defines test functions with PN_TEST(name) and lists them in
 * main() via pn_test_run(). CHECK* macros record a failure and continue; the
 * program prints "<file>: N passed, N failed" and exits 0 only if none failed.
 * Exit 77 (PN_TEST_SKIP) tells ctest the test was skipped (a missing service);
 * under CI=true a skip is turned into a failure so it never passes silently.
 */
#ifndef POSTERN_TESTING_H
#define POSTERN_TESTING_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PN_TEST_SKIP 77

extern int pn_test_failures_;

#define PN_TEST(name) static void name(void)

#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                             \
			pn_test_failures_++;                                  \
		}                                                             \
	} while (0)

#define CHECK_INT(a, b)                                                       \
	do {                                                                  \
		long long a_ = (long long)(a), b_ = (long long)(b);           \
		if (a_ != b_) {                                               \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", \
				__FILE__, __LINE__, #a, a_, #b, b_);          \
			pn_test_failures_++;                                  \
		}                                                             \
	} while (0)

#define CHECK_STR(a, b)                                                       \
	do {                                                                  \
		const char *a_ = (a), *b_ = (b);                              \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {        \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
				__FILE__, __LINE__, #a, a_ ? a_ : "(null)",   \
				b_ ? b_ : "(null)");                          \
			pn_test_failures_++;                                  \
		}                                                             \
	} while (0)

#define CHECK_MEM(a, alen, b, blen)                                           \
	do {                                                                  \
		size_t al_ = (alen), bl_ = (blen);                            \
		if (al_ != bl_ || memcmp((a), (b), al_) != 0) {               \
			fprintf(stderr, "%s:%d: %s (%zu bytes) differs from %s (%zu bytes)\n", \
				__FILE__, __LINE__, #a, al_, #b, bl_);        \
			pn_test_failures_++;                                  \
		}                                                             \
	} while (0)

struct pn_test_case {
	const char *name;
	void (*fn)(void);
};

#define PN_TEST_CASE(fn) { #fn, fn }

/* Runs each case, prints a line per failing case and the closing summary. */
static inline int pn_test_run(const char *suite, const struct pn_test_case *cases,
			      size_t n)
{
	int passed = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		int before = pn_test_failures_;
		cases[i].fn();
		if (pn_test_failures_ != before) {
			fprintf(stderr, "FAIL %s.%s\n", suite, cases[i].name);
			failed++;
		} else {
			passed++;
		}
	}
	printf("%s: %d passed, %d failed\n", suite, passed, failed);
	return failed == 0 ? 0 : 1;
}

/* A test that needs a service which is not there: skip locally, fail in CI. */
static inline int pn_test_skip(const char *suite, const char *why)
{
	const char *ci = getenv("CI");
	fprintf(stderr, "%s: skipped: %s\n", suite, why);
	if (ci != NULL && strcmp(ci, "true") == 0)
		return 1;
	return PN_TEST_SKIP;
}

#define PN_TEST_MAIN(suite, ...)                                              \
	int pn_test_failures_;                                                \
	int main(void)                                                        \
	{                                                                     \
		static const struct pn_test_case cases_[] = { __VA_ARGS__ }; \
		return pn_test_run(suite, cases_,                             \
				   sizeof(cases_) / sizeof(cases_[0]));       \
	}

#endif
