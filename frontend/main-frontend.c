/* postern-frontend: the stateless IMAP / POP3 / SMTP node of a Postern
 * cluster. Reads its configuration (file, POSTERN_* environment, --set),
 * sets up the node (fe-node.c) and runs until a SIGTERM drain ends; on
 * SIGHUP the node reads the configuration again from the same sources.
 *
 *   postern-frontend [-c FILE] [--set key=value]... [--check-config]
 *   postern-frontend --help-config      the configuration reference (Markdown)
 */
#include "postern/log.h"

#include "fe-config.h"
#include "fe-node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 256

static void usage(FILE *out)
{
	fputs("usage: postern-frontend [-c FILE] [--set key=value]... [--check-config]\n"
	      "       postern-frontend --help-config\n"
	      "Every key can also be set as POSTERN_<KEY> in the environment.\n", out);
}

int main(int argc, char **argv)
{
	const char *path = NULL, *sets[MAX_SETS] = { NULL }, *error;
	size_t nsets = 0;
	bool check_only = false;
	struct fe_config cfg;
	struct fe_node *node;
	int ret;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help-config") == 0) {
			return fe_config_write_reference(stdout) < 0 ? 1 : 0;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--check-config") == 0) {
			check_only = true;
		} else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			path = argv[++i];
		} else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
			if (nsets == MAX_SETS) {
				fputs("postern-frontend: too many --set\n", stderr);
				return 2;
			}
			sets[nsets++] = argv[++i];
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (fe_config_load(&cfg, path, sets, nsets, &error) < 0) {
		fprintf(stderr, "postern-frontend: %s\n", error);
		fe_config_free(&cfg);
		return 2;
	}
	if (check_only) {
		fe_config_free(&cfg);
		puts("configuration ok");
		return 0;
	}
	node = calloc(1, sizeof(*node));
	if (node == NULL) {
		fe_config_free(&cfg);
		return 1;
	}
	if (fe_node_init(node, &cfg, &error) < 0) {
		pn_error("event=start_failed error=\"%s\"", error);
		fe_node_free(node);
		fe_config_free(&cfg);
		free(node);
		return 1;
	}
	node->config_path = path;
	node->config_sets = sets;
	node->config_nsets = nsets;
	ret = fe_node_run(node);
	fe_node_free(node);
	free(node);
	return ret < 0 ? 1 : 0;
}
