/* Helpers shared by the storage unit tests that run a real loop against
 * the harness' services (test-pgpool.c, test-redis.c, test-blob.c,
 * test-faults.c). Header-only, static functions: include from one test
 * program each.
 */
#ifndef POSTERN_STORE_TEST_H
#define POSTERN_STORE_TEST_H

#include <postern/loop.h>
#include <postern/testing.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t st_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the loop until *flag becomes true or ms pass. Returns *flag. */
static inline bool st_run_until(struct pn_loop *loop, const bool *flag, unsigned int ms)
{
	uint64_t end = st_now_ms() + ms;

	while (!*flag && st_now_ms() < end)
		pn_loop_run_once(loop, 20);
	return *flag;
}

/* Runs the loop until *count reaches want or ms pass. */
static inline bool st_run_count(struct pn_loop *loop, const int *count, int want,
				unsigned int ms)
{
	uint64_t end = st_now_ms() + ms;

	while (*count < want && st_now_ms() < end)
		pn_loop_run_once(loop, 20);
	return *count >= want;
}

/* Runs the loop for ms. */
static inline void st_run_for(struct pn_loop *loop, unsigned int ms)
{
	uint64_t end = st_now_ms() + ms;

	while (st_now_ms() < end)
		pn_loop_run_once(loop, 10);
}

/* Runs tests/harness/services CMD $POSTERN_SERVICES_DIR [ARG], quietly.
 * Returns its exit status, or -1 when the harness is not reachable. */
static inline int st_services(const char *cmd, const char *arg)
{
	const char *src = getenv("POSTERN_SOURCE_DIR");
	const char *dir = getenv("POSTERN_SERVICES_DIR");
	char tool[4096];
	pid_t pid;
	int status;

	if (src == NULL || dir == NULL)
		return -1;
	snprintf(tool, sizeof(tool), "%s/tests/harness/services", src);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		FILE *devnull = freopen("/dev/null", "w", stdout);

		(void)devnull;
		execl(tool, tool, cmd, dir, arg, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

#endif
