/* Worker threads for blocking or CPU-heavy jobs; completions are posted back
 * to the submitting loop. See postern/workpool.h. */
#include "postern/workpool.h"

#include "postern/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct pn_job {
	struct pn_job *next;
	struct pn_loop *loop;
	void (*work)(void *ctx);
	void (*done)(void *ctx);
	void *ctx;
};

struct pn_workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pn_job *head, *tail;
	unsigned int queued, running, max_queue, nthreads;
	int stopping;
	pthread_t *threads;
};

static void *worker_main(void *arg)
{
	struct pn_workpool *pool = arg;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (pool->head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		struct pn_job *job = pool->head;
		if (job == NULL)
			break; /* stopping and drained */
		pool->head = job->next;
		if (pool->head == NULL)
			pool->tail = NULL;
		pool->queued--;
		pool->running++;
		pthread_mutex_unlock(&pool->lock);

		job->work(job->ctx);
		/* If posting fails the loop is gone; nobody is left to tell. */
		(void)pn_loop_post(job->loop, job->done, job->ctx);
		free(job);

		pthread_mutex_lock(&pool->lock);
		pool->running--;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

struct pn_workpool *pn_workpool_new(unsigned int threads, unsigned int max_queue,
				    const char **error_r)
{
	struct pn_workpool *pool;

	if (threads == 0 || max_queue == 0) {
		*error_r = "workpool: threads and max_queue must be at least 1";
		return NULL;
	}
	pool = calloc(1, sizeof(*pool));
	if (pool == NULL) {
		*error_r = "workpool: out of memory";
		return NULL;
	}
	pool->threads = calloc(threads, sizeof(pthread_t));
	if (pool->threads == NULL) {
		free(pool);
		*error_r = "workpool: out of memory";
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->max_queue = max_queue;
	for (unsigned int i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
			*error_r = "workpool: cannot start a thread";
			pool->nthreads = i;
			pn_workpool_free(&pool);
			return NULL;
		}
	}
	pool->nthreads = threads;
	return pool;
}

void pn_workpool_free(struct pn_workpool **poolp)
{
	struct pn_workpool *pool = *poolp;

	if (pool == NULL)
		return;
	*poolp = NULL;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool->threads);
	free(pool);
}

int pn_workpool_submit(struct pn_workpool *pool, struct pn_loop *loop,
		       void (*work)(void *ctx), void (*done)(void *ctx), void *ctx)
{
	struct pn_job *job = malloc(sizeof(*job));

	if (job == NULL) {
		errno = ENOMEM;
		return -1;
	}
	job->next = NULL;
	job->loop = loop;
	job->work = work;
	job->done = done;
	job->ctx = ctx;
	pthread_mutex_lock(&pool->lock);
	if (pool->queued >= pool->max_queue || pool->stopping) {
		pthread_mutex_unlock(&pool->lock);
		free(job);
		errno = EAGAIN;
		return -1;
	}
	if (pool->tail != NULL)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

unsigned int pn_workpool_pending(struct pn_workpool *pool)
{
	unsigned int n;

	pthread_mutex_lock(&pool->lock);
	n = pool->queued + pool->running;
	pthread_mutex_unlock(&pool->lock);
	return n;
}
