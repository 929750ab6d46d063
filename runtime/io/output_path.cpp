#include "runtime/io/output_path.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "runtime/error.hpp"

namespace troupe::runtime {

namespace {

namespace fs = std::filesystem;

/// `p`, or "." for an empty (relative, no directory) path.
fs::path or_here(const fs::path& p) {
  return p.empty() ? fs::path{"."} : p;
}

/// The first of `dir` and its ancestors that exists.
fs::path nearest_existing(fs::path dir) {
  std::error_code ec;
  while (!fs::exists(dir, ec) && dir.has_relative_path() && dir.has_parent_path() &&
         dir.parent_path() != dir)
    dir = dir.parent_path();
  return or_here(fs::exists(dir, ec) ? dir : fs::path{});
}

/// Empty when a file can be created in the existing directory `dir` (proved
/// by creating and removing one: permissions, read-only mounts and full
/// quotas all show), else why not.
std::string writable_directory(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return dir.string() + " is not a directory";
  auto probe = dir / (".troupe-probe-" + std::to_string(::getpid()));
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return "cannot write in directory " + dir.string() + " (" + std::strerror(errno) + ")";
  ::close(fd);
  ::unlink(probe.c_str());
  return {};
}

} // namespace

void check_output_file(const std::string& flag, const fs::path& file, bool makes_parents) {
  auto fail = [&](const std::string& why) {
    throw input_error(flag + " " + file.string() + ": " + why);
  };
  std::error_code ec;
  if (!file.has_filename())
    fail("does not name a file");
  if (fs::is_directory(file, ec))
    fail("is a directory, not a file");
  const auto parent = or_here(file.parent_path());
  if (!makes_parents && !fs::exists(parent, ec))
    fail("directory " + parent.string() + " does not exist");
  if (auto why = writable_directory(nearest_existing(parent)); !why.empty())
    fail(why);
}

void check_output_directory(const std::string& flag, const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw input_error(flag + " " + dir.string() + ": is a file, not a directory");
  if (auto why = writable_directory(nearest_existing(dir)); !why.empty())
    throw input_error(flag + " " + dir.string() + ": " + why);
}

} // namespace troupe::runtime
