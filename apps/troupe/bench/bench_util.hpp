#pragma once

// Small pieces every `troupe bench` subcommand prints, writes or looks up:
// the machine's state next to the figures, medians and ratios, peers on disk.
// Change here when two benchmarks would otherwise each write the same helper.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/gemm_backend.hpp"

namespace troupe::apps {

/// "1-min 5-min 15-min" from /proc/loadavg ("?" if unreadable): printed next
/// to every timing, since a busy machine changes them.
std::string load_average();

/// " (busy machine: figures are noisy)" when the 1-minute `load` is at least
/// `cores`, else "": appended to the load average printed after a run.
const char* busy_note(const std::string& load, unsigned cores);

/// The variable's value, or "(unset)": benchmarks print the BLAS settings
/// they ran under.
std::string env_or_unset(const char* name);

/// OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE and OMP_NUM_THREADS as env_or_unset
/// gives them, for a report's "env" field.
nlohmann::json blas_env_json();

/// The same as "OPENBLAS_CORETYPE=.. OPENBLAS_L2_SIZE=.. OMP_NUM_THREADS=..",
/// for the printed report.
std::string blas_env_text();

/// Writes `doc` indented to `file`, atomically (a reader never sees half).
void write_json_file(const std::string& file, const nlohmann::json& doc);

/// Median, min and max of a sample (empty: all zero): benchmarks repeat
/// their configurations and report the median with its range.
struct summary {
  double median = 0, min = 0, max = 0;
  static summary of(std::vector<double> v);
  /// (max - min) / median, in percent.
  double spread_percent() const { return median > 0 ? 100.0 * (max - min) / median : 0.0; }
  nlohmann::json to_json() const {
    return {{"median", median}, {"min", min}, {"max", max}, {"spread_percent", spread_percent()}};
  }
};

/// The ratio a / b of two configurations' figures: of the medians, and per
/// repeat (a[i] and b[i] measured in the same repeat, so under the same load).
struct paired_ratio {
  double of_medians = 0;
  summary per_repeat;
  static paired_ratio of(const std::vector<double>& a, const std::vector<double>& b);
};

/// memcpy GB/s (bytes copied / s) over 64 MiB buffers on this thread, median
/// of 7: the machine's bandwidth that transfer figures are read against.
double memcpy_gbps();

/// "64K", "4M", "1G" or plain bytes: the largest unit that divides `b`.
std::string human_bytes(std::size_t b);

/// `x` with "%.9g": numbers passed as flags to another process.
std::string number(double x);

/// The last non-empty line of `text` (empty when there is none): a peer's
/// report or final error message.
std::string last_line(const std::string& text);

/// This executable (/proc/self/exe): benchmarks re-run it as rank processes
/// and find their peers next to it.
std::filesystem::path self_exe();

/// `name` next to this executable (build/bin/troupe -> build/bin/name), or
/// `name` alone when this executable cannot be found.
std::filesystem::path next_to_self(const std::string& name);

/// A regular file this process may execute.
bool is_executable(const std::filesystem::path& p);

/// The first executable `name` in $PATH.
std::optional<std::filesystem::path> find_on_path(const std::string& name);

/// Splits "TOKEN a b c" into words (the rank processes' line protocol).
std::vector<std::string> words(const std::string& line);

/// troupe's BLAS as a device actor with `threads` threads describes it: the
/// GEMM library it resolves `gemm` to, and OpenBLAS (core type, threads).
std::string troupe_blas(int threads, kernels::cpu::gemm_backend gemm);

} // namespace troupe::apps
