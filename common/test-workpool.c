/* Unit tests for postern/workpool.h: jobs run off the loop thread, their
 * completions run on it, and the queue bound is enforced. */
#include "postern/loop.h"
#include "postern/testing.h"
#include "postern/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

struct job_ctx {
	pthread_t loop_thread;
	pthread_t work_thread;
	int work_ran;
	int done_on_loop;
	int *done_count;
	struct pn_loop *loop;
	int stop_after;
};

static void job_work(void *p)
{
	struct job_ctx *j = p;
	j->work_thread = pthread_self();
	j->work_ran = 1;
	usleep(1000);
}

static void job_done(void *p)
{
	struct job_ctx *j = p;
	j->done_on_loop = pthread_equal(pthread_self(), j->loop_thread);
	(*j->done_count)++;
	if (*j->done_count == j->stop_after)
		pn_loop_stop(j->loop);
}

PN_TEST(test_jobs_complete_on_loop)
{
	const char *error = NULL;
	struct pn_loop *loop = pn_loop_new(NULL, &error);
	CHECK(loop != NULL);
	if (loop == NULL)
		return;
	struct pn_workpool *pool = pn_workpool_new(2, 64, &error);
	CHECK(pool != NULL);
	struct job_ctx jobs[20];
	int done = 0;
	for (int i = 0; i < 20; i++) {
		jobs[i] = (struct job_ctx){ .loop_thread = pthread_self(), .done_count = &done,
					    .loop = loop, .stop_after = 20 };
		CHECK_INT(pn_workpool_submit(pool, loop, job_work, job_done, &jobs[i]), 0);
	}
	CHECK_INT(pn_loop_run(loop), 0);
	CHECK_INT(done, 20);
	for (int i = 0; i < 20; i++) {
		CHECK(jobs[i].work_ran);
		CHECK(jobs[i].done_on_loop);
		CHECK(!pthread_equal(jobs[i].work_thread, pthread_self()));
	}
	pn_workpool_free(&pool);
	CHECK(pool == NULL);
	pn_loop_free(&loop);
}

static void slow_work(void *p)
{
	(void)p;
	usleep(200 * 1000);
}

static void count_done(void *p)
{
	(*(int *)p)++;
}

PN_TEST(test_queue_bound)
{
	const char *error = NULL;
	struct pn_loop *loop = pn_loop_new(NULL, &error);
	CHECK(loop != NULL);
	if (loop == NULL)
		return;
	struct pn_workpool *pool = pn_workpool_new(1, 2, &error);
	int done = 0, accepted = 0, refused = 0;
	for (int i = 0; i < 10; i++) {
		if (pn_workpool_submit(pool, loop, slow_work, count_done, &done) == 0)
			accepted++;
		else if (errno == EAGAIN)
			refused++;
	}
	/* one running (maybe) + two queued; the rest refused */
	CHECK(accepted >= 2 && accepted <= 3);
	CHECK_INT(accepted + refused, 10);
	pn_workpool_free(&pool); /* waits for the accepted jobs */
	while (done < accepted && pn_loop_run_once(loop, 1000) > 0)
		;
	CHECK_INT(done, accepted);
	pn_loop_free(&loop);
}

PN_TEST_MAIN("workpool",
	PN_TEST_CASE(test_jobs_complete_on_loop),
	PN_TEST_CASE(test_queue_bound))
