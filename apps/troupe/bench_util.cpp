#include "apps/troupe/bench_util.hpp"

#include <fstream>

#include "runtime/file_util.hpp"

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

} // namespace troupe::apps
