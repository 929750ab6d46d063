#include "apps/troupe/bench/bench_ps_options.hpp"

#include <algorithm>
#include <sstream>

#include "runtime/error.hpp"

namespace troupe::apps::ps_bench {

namespace rt = troupe::runtime;

/// "1,2,4" -> {1, 2, 4}, each in [lo, hi]; throws input_error naming `flag`.
std::vector<int> parse_int_list(const std::string& flag, const std::string& list, int lo, int hi) {
  std::vector<int> out;
  std::stringstream in{list};
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < lo || v > hi)
      throw rt::input_error(flag + ": '" + item + "' is not a number in [" + std::to_string(lo) +
                            ", " + std::to_string(hi) + "] (expected a list like 1,2,4)");
    if (std::find(out.begin(), out.end(), v) == out.end())
      out.push_back(v);
  }
  if (out.empty())
    throw rt::input_error(flag + ": empty list");
  return out;
}

/// "a,b" -> {"a", "b"}, each one of `known`; throws input_error naming `flag`.
std::vector<std::string> parse_word_list(const std::string& flag, const std::string& list,
                                         const std::vector<std::string>& known) {
  std::vector<std::string> out;
  std::stringstream in{list};
  std::string item;
  while (std::getline(in, item, ',')) {
    if (std::find(known.begin(), known.end(), item) == known.end()) {
      std::string k;
      for (const auto& x : known)
        k += (k.empty() ? "" : ", ") + x;
      throw rt::input_error(flag + ": unknown '" + item + "' (known: " + k + ")");
    }
    if (std::find(out.begin(), out.end(), item) == out.end())
      out.push_back(item);
  }
  if (out.empty())
    throw rt::input_error(flag + ": empty list");
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

} // namespace troupe::apps::ps_bench
