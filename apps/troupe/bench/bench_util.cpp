#include "apps/troupe/bench/bench_util.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/onednn_gemm.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::apps {

namespace fs = std::filesystem;

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return in ? a + " " + b + " " + c : "?";
}

const char* busy_note(const std::string& load, unsigned cores) {
  return std::atof(load.c_str()) >= cores ? " (busy machine: figures are noisy)" : "";
}

std::string env_or_unset(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "(unset)";
}

nlohmann::json blas_env_json() {
  return {{"OPENBLAS_CORETYPE", env_or_unset("OPENBLAS_CORETYPE")},
          {"OPENBLAS_L2_SIZE", env_or_unset("OPENBLAS_L2_SIZE")},
          {"OMP_NUM_THREADS", env_or_unset("OMP_NUM_THREADS")}};
}

std::string blas_env_text() {
  return "OPENBLAS_CORETYPE=" + env_or_unset("OPENBLAS_CORETYPE") +
         " OPENBLAS_L2_SIZE=" + env_or_unset("OPENBLAS_L2_SIZE") +
         " OMP_NUM_THREADS=" + env_or_unset("OMP_NUM_THREADS");
}

void write_json_file(const std::string& file, const nlohmann::json& doc) {
  auto text = doc.dump(2) + "\n";
  runtime::write_file_atomically(file,
                                 {reinterpret_cast<const std::byte*>(text.data()), text.size()});
}

summary summary::of(std::vector<double> v) {
  summary s;
  if (v.empty())
    return s;
  std::sort(v.begin(), v.end());
  auto n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.min = v.front();
  s.max = v.back();
  return s;
}

paired_ratio paired_ratio::of(const std::vector<double>& a, const std::vector<double>& b) {
  paired_ratio r;
  auto mb = summary::of(b).median;
  r.of_medians = mb > 0 ? summary::of(a).median / mb : 0;
  std::vector<double> each;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    each.push_back(a[i] / b[i]);
  r.per_repeat = summary::of(each);
  return r;
}

double memcpy_gbps() {
  using clock_type = std::chrono::steady_clock;
  const std::size_t bytes = std::size_t{64} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 2);
  std::vector<double> rates;
  for (int r = 0; r < 8; ++r) {
    auto t0 = clock_type::now();
    std::memcpy(dst.data(), src.data(), bytes);
    double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (r > 0) // the first touches the pages
      rates.push_back(static_cast<double>(bytes) / s / 1e9);
  }
  volatile char sink = dst[bytes / 2];
  (void)sink;
  return summary::of(rates).median;
}

std::string human_bytes(std::size_t b) {
  char buf[32];
  if (b >= (std::size_t{1} << 30) && b % (std::size_t{1} << 30) == 0)
    std::snprintf(buf, sizeof buf, "%zuG", b >> 30);
  else if (b >= (std::size_t{1} << 20) && b % (std::size_t{1} << 20) == 0)
    std::snprintf(buf, sizeof buf, "%zuM", b >> 20);
  else if (b >= 1024 && b % 1024 == 0)
    std::snprintf(buf, sizeof buf, "%zuK", b >> 10);
  else
    std::snprintf(buf, sizeof buf, "%zu", b);
  return buf;
}

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos)
    return {};
  auto begin = text.rfind('\n', end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return text.substr(begin, end + 1 - begin);
}

fs::path self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    throw std::runtime_error("cannot find this executable: " + ec.message());
  return p;
}

fs::path next_to_self(const std::string& name) {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path{name} : self.parent_path() / name;
}

bool is_executable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

std::optional<fs::path> find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream in{path ? path : ""};
  std::string d;
  while (std::getline(in, d, ':'))
    if (!d.empty() && is_executable(fs::path{d} / name))
      return fs::path{d} / name;
  return std::nullopt;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> out;
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

std::string troupe_blas(int threads, kernels::cpu::gemm_backend gemm) {
  // Described with this thread's BLAS thread count set as a device actor sets its own.
  kernels::cpu::set_blas_threads_for_this_thread(threads);
  auto d = kernels::cpu::blas_description();
  if (kernels::cpu::resolve_gemm_backend(gemm, threads) == kernels::cpu::gemm_backend::onednn)
    d = "gemm=" + kernels::cpu::onednn_description() + " (OpenBLAS for the rest: " + d + ")";
  return d;
}

} // namespace troupe::apps
