/* postern-balancer: the L4 load balancer in front of the frontends.
 *
 *   postern-balancer [--config FILE] [--set key=value]... [--help-config]
 *
 * Every setting has a default, may come from FILE (key = value lines), is
 * overridden by POSTERN_<KEY> in the environment and then by --set. The
 * local cluster configures it through the environment alone (see
 * docs/local-cluster.md). SIGHUP re-reads the same sources; SIGTERM or
 * SIGINT stops accepting, lets connections finish for shutdown_grace and
 * exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb.h"
#include "postern/log.h"

#define MAX_SETS 256

static void usage(FILE *out)
{
	fprintf(out, "usage: postern-balancer [--config FILE] [--set key=value]... "
		     "[--help-config]\n");
}

int main(int argc, char **argv)
{
	static struct lb lb;
	static const char *sets[MAX_SETS];
	size_t nsets = 0;
	const char *err = NULL;
	int code;

	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) &&
		    i + 1 < argc) {
			lb.config_path = argv[++i];
		} else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
			if (nsets == MAX_SETS) {
				fprintf(stderr, "postern-balancer: too many --set\n");
				return 2;
			}
			sets[nsets++] = argv[++i];
		} else if (strcmp(argv[i], "--help-config") == 0) {
			return pn_config_write_markdown(lb_config_defs, lb_config_def_count,
							stdout) < 0 ? 1 : 0;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	lb.sets = sets;
	lb.nsets = nsets;
	if (lb_init(&lb, &err) < 0) {
		pn_error("event=start_failed error=\"%s\"", err != NULL ? err : "?");
		lb_free(&lb);
		return 1;
	}
	code = lb_run(&lb);
	lb_free(&lb);
	return code;
}
