/* SPDX-License-Identifier: MIT */
/*
 * The fuzz target without libFuzzer, for any compiler: feed every corpus file
 * given on the command line (files or directories), then a deterministic
 * stream of inputs: pseudo-random bytes and mutations of the corpus files,
 * from a fixed seed.  Any difference between the library and the model
 * aborts (fuzz_semantics.c prints the last commands).
 *
 *	fuzz-semantics-replay [-n COUNT] [-s SEED] PATH...
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_semantics.h"
#include "rsutil.h"

struct input {
	uint8_t *data;
	size_t size;
};

static struct input *corpus;
static size_t ncorpus;

static struct rsu_rng rng;

static uint64_t next(void)
{
	return rsu_rng_next(&rng);
}

static void load_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	struct input in = { NULL, 0 };
	uint8_t buf[4096];
	size_t n;

	if (!fp) {
		perror(path);
		exit(2);
	}
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) {
		in.data = realloc(in.data, in.size + n);
		if (!in.data)
			abort();
		memcpy(in.data + in.size, buf, n);
		in.size += n;
	}
	fclose(fp);
	corpus = realloc(corpus, (ncorpus + 1) * sizeof(*corpus));
	if (!corpus)
		abort();
	corpus[ncorpus++] = in;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load(const char *path)
{
	struct stat st;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, i;
	DIR *d;

	if (stat(path, &st) != 0) {
		perror(path);
		exit(2);
	}
	if (!S_ISDIR(st.st_mode)) {
		load_file(path);
		return;
	}
	d = opendir(path);
	if (!d) {
		perror(path);
		exit(2);
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		size_t len = strlen(path) + strlen(de->d_name) + 2;

		names = realloc(names, (n + 1) * sizeof(*names));
		if (!names || !(names[n] = malloc(len)))
			abort();
		snprintf(names[n], len, "%s/%s", path, de->d_name);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);   /* a fixed order */
	for (i = 0; i < n; i++) {
		load_file(names[i]);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	unsigned long count = 20000, i;
	uint64_t seed = 0x5eed5eedull;
	uint8_t buf[1024];
	uint64_t t0;
	size_t len, j, k;
	int a;

	for (a = 1; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "-n") && a + 1 < argc)
			count = strtoul(argv[++a], NULL, 0);
		else if (!strcmp(argv[a], "-s") && a + 1 < argc)
			seed = strtoull(argv[++a], NULL, 0);
		else {
			fprintf(stderr, "usage: %s [-n COUNT] [-s SEED] PATH...\n", argv[0]);
			return 2;
		}
	}
	for (; a < argc; a++)
		load(argv[a]);
	t0 = rsu_now_ns();
	for (i = 0; i < ncorpus; i++)
		fuzz_one(corpus[i].data, corpus[i].size);
	rng = rsu_rng_stream(seed, 0);
	for (i = 0; i < count; i++) {
		if (ncorpus && (next() & 1)) {
			/* A corpus file with a few bytes changed, inserted or cut. */
			struct input *in = &corpus[next() % ncorpus];

			len = in->size < sizeof(buf) ? in->size : sizeof(buf);
			memcpy(buf, in->data, len);
			for (k = next() % 8 + 1; k > 0 && len > 0; k--) {
				j = next() % len;
				switch (next() % 3) {
				case 0:
					buf[j] = (uint8_t)next();
					break;
				case 1:
					if (len < sizeof(buf)) {
						memmove(buf + j + 1, buf + j, len - j);
						buf[j] = (uint8_t)next();
						len++;
					}
					break;
				default:
					memmove(buf + j, buf + j + 1, len - j - 1);
					len--;
					break;
				}
			}
		} else {
			len = next() % 256 + 1;
			for (j = 0; j < len; j++)
				buf[j] = (uint8_t)next();
		}
		fuzz_one(buf, len);
	}
	printf("fuzz-semantics-replay: %zu corpus files and %lu generated inputs "
	       "(seed %#llx), no difference, %.2f s\n", ncorpus, count,
	       (unsigned long long)seed,
	       (double)(rsu_now_ns() - t0) / 1e9);
	return 0;
}
