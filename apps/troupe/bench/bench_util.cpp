#include "apps/troupe/bench/bench_util.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "runtime/io/file_util.hpp"

namespace troupe::apps {

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return in ? a + " " + b + " " + c : "?";
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

std::filesystem::path self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec)
    throw std::runtime_error("cannot find this executable: " + ec.message());
  return p;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> out;
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

} // namespace troupe::apps
