#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "runtime/io/temp_dir.hpp"

namespace troupe::test {

/// A fresh directory under the system temp directory, removed with its contents
/// when the test ends.
using temp_dir = runtime::temp_dir;

/// Writes bytes to a file without any of the code under test.
template <class Byte>
inline void write_plain(const std::filesystem::path& p, std::span<const Byte> bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f)
    throw std::runtime_error("cannot write " + p.string());
}

inline std::vector<unsigned char> read_plain(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f)
    throw std::runtime_error("cannot read " + p.string());
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// Predicate for BOOST_CHECK_EXCEPTION: the message contains every fragment.
template <class... S>
auto message_has(S... fragments) {
  return [=](const std::exception& e) {
    std::string m = e.what();
    bool ok = ((m.find(fragments) != std::string::npos) && ...);
    if (!ok)
      std::fprintf(stderr, "unexpected message: %s\n", m.c_str());
    return ok;
  };
}

} // namespace troupe::test
