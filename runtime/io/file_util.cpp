#include "runtime/io/file_util.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <random>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "runtime/error.hpp"

namespace troupe::runtime {

namespace {

// Built with append: GCC 12 reports a false -Wrestrict for "literal" + string&&.
std::string quoted(const std::filesystem::path& p) {
  std::string r{"'"};
  r += p.string();
  r += '\'';
  return r;
}

/// Closes a descriptor on scope exit and, while armed, unlinks the temporary file.
class temp_guard {
public:
  temp_guard(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  ~temp_guard() {
    if (fd_ >= 0)
      ::close(fd_);
    if (armed_)
      ::unlink(path_.c_str());
  }
  temp_guard(const temp_guard&) = delete;
  temp_guard& operator=(const temp_guard&) = delete;

  int fd() const noexcept { return fd_; }
  /// Closes now so close() errors (deferred write errors on some file systems) are seen.
  int close_now() noexcept {
    int r = ::close(fd_);
    fd_ = -1;
    return r;
  }
  void disarm() noexcept { armed_ = false; }

private:
  int fd_;
  std::filesystem::path path_;
  bool armed_ = true;
};

/// A name no other writer uses: pid, a process-wide counter and a random word.
std::string temp_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++) + "." +
         std::to_string(gen() & 0xffffffffu);
}

void write_all(int fd, std::span<const std::span<const std::byte>> buffers,
               const std::filesystem::path& tmp) {
  std::vector<iovec> iov;
  iov.reserve(buffers.size());
  for (auto b : buffers)
    if (!b.empty())
      iov.push_back({const_cast<std::byte*>(b.data()), b.size()});
  std::size_t first = 0;
  while (first < iov.size()) {
    int count = static_cast<int>(std::min<std::size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = ::writev(fd, iov.data() + first, count);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      fail_on_file("cannot write temporary file", tmp, errno);
    }
    // Skip what was written, possibly ending inside a buffer (short write).
    auto left = static_cast<std::size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      ++first;
    }
    if (left > 0) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
}

} // namespace

void fsync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    fail_on_file("cannot open directory for fsync", dir, errno);
  int r = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems do not support fsync on directories; that is not a failure
  // of the write itself.
  if (r != 0 && err != EINVAL && err != ENOTSUP)
    fail_on_file("cannot fsync directory", dir, err);
}

void write_file_atomically(const std::filesystem::path& target, std::span<const std::byte> bytes) {
  std::array<std::span<const std::byte>, 1> one{bytes};
  write_file_atomically(target, std::span<const std::span<const std::byte>>{one});
}

void write_file_atomically(const std::filesystem::path& target,
                           std::span<const std::span<const std::byte>> buffers) {
  if (target.empty() || !target.has_filename())
    throw input_error("write_file_atomically: " + quoted(target) + " does not name a file");
  std::filesystem::path dir = target.parent_path();
  if (dir.empty())
    dir = ".";
  std::string base{"."};
  base += target.filename().string();

  std::filesystem::path tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = dir / (base + temp_suffix());
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST)
      fail_on_file("cannot create temporary file in " + quoted(dir) + " for", target, errno);
  }
  if (fd < 0)
    fail_on_file("cannot create temporary file in " + quoted(dir) + " for", target, EEXIST);

  temp_guard guard{fd, tmp};
  write_all(guard.fd(), buffers, tmp);
  if (::fsync(guard.fd()) != 0)
    fail_on_file("cannot fsync temporary file for", target, errno);
  if (guard.close_now() != 0)
    fail_on_file("cannot close temporary file for", target, errno);
  if (::rename(tmp.c_str(), target.c_str()) != 0)
    fail_on_file("cannot rename temporary file over", target, errno);
  guard.disarm();
  fsync_directory(dir);
}

std::vector<std::byte> read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail_on_file("cannot open", path, errno);
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_on_exit{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0)
    fail_on_file("cannot stat", path, errno);
  if (!S_ISREG(st.st_mode))
    throw input_error("cannot read " + quoted(path) + ": not a regular file");
  if (static_cast<std::uintmax_t>(st.st_size) > max_bytes)
    throw input_error("cannot read " + quoted(path) + ": file has " + std::to_string(st.st_size) +
                      " bytes, more than the limit of " + std::to_string(max_bytes));

  // Read to EOF rather than trusting st_size (files in /proc report 0, and a file
  // may change while it is read), but never beyond max_bytes.
  std::vector<std::byte> out(static_cast<std::size_t>(st.st_size));
  std::size_t used = 0;
  for (;;) {
    if (used == out.size()) {
      if (out.size() > max_bytes) // read one byte past the limit: too large
        throw input_error("cannot read " + quoted(path) + ": file grew beyond the limit of " +
                          std::to_string(max_bytes) + " bytes while reading");
      const std::size_t cap = max_bytes < SIZE_MAX ? max_bytes + 1 : SIZE_MAX;
      std::size_t grow = std::max<std::size_t>(out.size() / 2, 4096);
      out.resize(out.size() + std::min(grow, cap - out.size()));
    }
    ssize_t n = ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      fail_on_file("cannot read", path, errno);
    }
    if (n == 0)
      break;
    used += static_cast<std::size_t>(n);
  }
  if (used > max_bytes)
    throw input_error("cannot read " + quoted(path) + ": file is larger than the limit of " +
                      std::to_string(max_bytes) + " bytes");
  out.resize(used);
  return out;
}

std::string sha256_hex(std::span<const std::byte> bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256_hex: EVP_Digest failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string r;
  r.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    r += hex[md[i] >> 4];
    r += hex[md[i] & 0xf];
  }
  return r;
}

void ensure_writable_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw input_error("directory " + dir.string() + " cannot be created: " +
                      (ec ? ec.message() : std::string{"a file of that name exists"}));
  auto probe = dir / ".troupe-write-probe";
  write_file_atomically(probe, std::span<const std::byte>{});
  std::filesystem::remove(probe, ec);
}

[[noreturn]] void fail_on_file(const std::string& what, const std::filesystem::path& p, int err) {
  throw input_error(what + " " + quoted(p) + ": " + std::strerror(err));
}

[[noreturn]] void bad_file(const std::string& kind, const std::filesystem::path& p,
                           const std::string& what) {
  throw input_error(kind + " " + quoted(p) + ": " + what);
}

} // namespace troupe::runtime
