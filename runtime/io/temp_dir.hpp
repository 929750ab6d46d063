#pragma once

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace troupe::runtime {

/// A fresh private directory (mode 0700) under the system temp directory,
/// named `prefix` + 6 random characters, removed with its contents on scope
/// exit: for benchmarks' keys, traces and reports, and for tests.
class temp_dir {
public:
  explicit temp_dir(const std::string& prefix = "troupe-") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error(std::string{"mkdtemp: "} + std::strerror(errno));
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

} // namespace troupe::runtime
