// Reference timer for `npm run bench`: libbpf's btf__parse() on one BTF file, N times.
// Built at bench time against Debian's libbpf-dev; prints the median in microseconds.
#include <bpf/btf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s <btf file> <runs>\n", argv[0]);
		return 2;
	}
	int runs = atoi(argv[2]);
	double *us = calloc(runs, sizeof(double));
	unsigned int types = 0;
	for (int i = 0; i < runs; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		struct btf *btf = btf__parse(argv[1], NULL);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (!btf) {
			fprintf(stderr, "btf__parse failed on %s\n", argv[1]);
			return 1;
		}
		types = btf__type_cnt(btf);
		btf__free(btf);
		us[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
	}
	qsort(us, runs, sizeof(double), cmp);
	printf("{\"median_us\": %.1f, \"min_us\": %.1f, \"types\": %u}\n", us[runs / 2], us[0], types);
	return 0;
}
