// SPDX-License-Identifier: MIT
//
// The C++ shim between the C benchmarks and Google Benchmark.
//
// Only two things here are not plain forwarding:
//
// * Names.  Google Benchmark appends "/manual_time" to the name of a benchmark
//   that reports its own iteration times.  The names are an interface
//   ("stop/runstate/vcpus:4"): one name per benchmark, in every report, in
//   --benchmark_list_tests and for --benchmark_filter.  So the shim keeps the
//   registrations until rsb_main(), applies the filter and the listing to
//   those names itself (with Google Benchmark's rules: a regular expression
//   searched in the name, "all" for every one, a leading '-' to negate),
//   registers only the benchmarks that match, and every report goes through
//   NameKeeper, a reporter that clears the suffix before handing the run to
//   the reporter the flags asked for (console/json/csv, on stdout and in
//   --benchmark_out).
// * Errors.  NameKeeper counts runs that failed (SkipWithError), and
//   rsb_main() turns them into a non-zero exit status, so the smoke test
//   fails when a benchmark's own checks fail.

#include "shim.h"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

struct rsb_state {
	benchmark::State *s;
};

namespace {

unsigned long long n_errors;
unsigned long long n_runs;

struct registration {
	std::string name;
	rsb_fn *fn;
	void *arg;
	enum rsb_timing timing;
};

std::vector<registration> &registrations()
{
	static std::vector<registration> v;
	return v;
}

class NameKeeper : public benchmark::BenchmarkReporter {
public:
	// owned: delete inner with this reporter (the default display
	// reporter is a static of the library, never deleted).
	NameKeeper(benchmark::BenchmarkReporter *inner, bool owned, bool count)
		: inner_(inner), owned_(owned), count_(count) {}
	~NameKeeper() override
	{
		if (owned_)
			delete inner_;
	}
	NameKeeper(const NameKeeper &) = delete;
	NameKeeper &operator=(const NameKeeper &) = delete;

	bool ReportContext(const Context &ctx) override
	{
		// The library set our streams just before this call.
		inner_->SetOutputStream(&GetOutputStream());
		inner_->SetErrorStream(&GetErrorStream());
		return inner_->ReportContext(ctx);
	}

	void ReportRuns(const std::vector<Run> &runs) override
	{
		std::vector<Run> fixed(runs);
		for (Run &r : fixed) {
			r.run_name.time_type.clear();
			if (count_) {
				n_runs++;
				if (r.error_occurred)
					n_errors++;
			}
		}
		inner_->ReportRuns(fixed);
	}

	void Finalize() override { inner_->Finalize(); }

private:
	benchmark::BenchmarkReporter *inner_;
	bool owned_;
	bool count_;
};

// Value of --name=value in argv (the last one wins), else the environment
// variable Google Benchmark reads as its default, else dflt.
std::string flag_value(int argc, char **argv, const char *name, const char *env,
		       const char *dflt)
{
	std::string prefix = std::string("--") + name + "=";
	std::string v;
	bool found = false;

	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], prefix.c_str(), prefix.size())) {
			v = argv[i] + prefix.size();
			found = true;
		}
	}
	if (found)
		return v;
	if (const char *e = getenv(env))
		return e;
	return dflt;
}

benchmark::BenchmarkReporter *file_reporter_for(const std::string &fmt)
{
	if (fmt == "console")
		return new benchmark::ConsoleReporter(benchmark::ConsoleReporter::OO_None);
	if (fmt == "csv") {
		// Deprecated upstream but still what --benchmark_out_format=csv
		// gives; keep honouring the flag.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		return new benchmark::CSVReporter();
#pragma GCC diagnostic pop
	}
	return new benchmark::JSONReporter();
}

} // namespace

extern "C" {

void rsb_register(const char *name, rsb_fn *fn, void *arg, enum rsb_timing timing)
{
	registrations().push_back({name, fn, arg, timing});
}

bool rsb_keep_running(struct rsb_state *st)
{
	return st->s->KeepRunning();
}

bool rsb_keep_running_batch(struct rsb_state *st, uint64_t n)
{
	return st->s->KeepRunningBatch(static_cast<benchmark::IterationCount>(n));
}

uint64_t rsb_max_iterations(const struct rsb_state *st)
{
	return static_cast<uint64_t>(st->s->max_iterations);
}

void rsb_set_iteration_time(struct rsb_state *st, double seconds)
{
	st->s->SetIterationTime(seconds);
}

void rsb_counter(struct rsb_state *st, const char *name, double value)
{
	st->s->counters[name] = benchmark::Counter(value);
}

void rsb_skip_with_error(struct rsb_state *st, const char *msg)
{
	if (!st->s->error_occurred())
		st->s->SkipWithError(msg);
}

bool rsb_error_occurred(const struct rsb_state *st)
{
	return st->s->error_occurred();
}

int rsb_main(int argc, char **argv)
{
	// Read the output flags before Initialize() consumes them.
	std::string out = flag_value(argc, argv, "benchmark_out", "BENCHMARK_OUT", "");
	std::string out_fmt = flag_value(argc, argv, "benchmark_out_format",
					 "BENCHMARK_OUT_FORMAT", "json");
	std::string filter = flag_value(argc, argv, "benchmark_filter", "BENCHMARK_FILTER", "");
	std::string list = flag_value(argc, argv, "benchmark_list_tests",
				      "BENCHMARK_LIST_TESTS", "false");
	bool negate = false;

	// The filter and the listing are ours (see the top): take them out
	// of what Google Benchmark sees.
	{
		int k = 1;

		for (int i = 1; i < argc; i++) {
			if (!strcmp(argv[i], "--benchmark_list_tests"))
				list = "true";   // the bare form
			if (!strncmp(argv[i], "--benchmark_filter=", 19) ||
			    !strcmp(argv[i], "--benchmark_list_tests") ||
			    !strncmp(argv[i], "--benchmark_list_tests=", 23))
				continue;
			argv[k++] = argv[i];
		}
		argc = k;
		argv[argc] = nullptr;
		unsetenv("BENCHMARK_FILTER");
		unsetenv("BENCHMARK_LIST_TESTS");
	}
	if (filter.empty() || filter == "all")
		filter = ".";
	if (filter[0] == '-') {
		negate = true;
		filter.erase(0, 1);
	}

	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;

	std::regex re;
	try {
		re.assign(filter, std::regex::extended);
	} catch (const std::regex_error &e) {
		fprintf(stderr, "Could not compile benchmark filter '%s': %s\n", filter.c_str(),
			e.what());
		return 1;
	}
	size_t kept = 0;
	bool listing = list == "true" || list == "1" || list == "yes";
	for (const registration &r : registrations()) {
		if (std::regex_search(r.name, re) == negate)
			continue;
		kept++;
		if (listing) {
			printf("%s\n", r.name.c_str());
			continue;
		}
		rsb_fn *fn = r.fn;
		void *arg = r.arg;
		benchmark::internal::Benchmark *b = benchmark::RegisterBenchmark(
			r.name.c_str(), [fn, arg](benchmark::State &s) {
				rsb_state st{&s};
				fn(&st, arg);
			});
		b->Unit(benchmark::kNanosecond);
		if (r.timing == RSB_TIME_MANUAL)
			b->UseManualTime();
	}
	if (listing)
		return kept ? 0 : 1;
	if (!kept) {
		fprintf(stderr, "Failed to match any benchmarks against regex: %s\n",
			filter.c_str());
		return 1;
	}

	NameKeeper display(benchmark::CreateDefaultDisplayReporter(), false, true);
	size_t matched;
	if (!out.empty()) {
		NameKeeper file(file_reporter_for(out_fmt), true, false);
		matched = benchmark::RunSpecifiedBenchmarks(&display, &file);
	} else {
		matched = benchmark::RunSpecifiedBenchmarks(&display);
	}
	benchmark::Shutdown();
	if (matched == 0)
		return 1;
	return n_errors ? 1 : 0;
}

} // extern "C"
