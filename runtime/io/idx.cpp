#include "runtime/io/idx.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::runtime {

namespace {

constexpr unsigned max_idx_dims = 8;
/// Deflate's largest expansion (about 1032:1), to bound a gzip file's data by its size.
constexpr std::uint64_t gzip_max_ratio = 1032;

/// An IDX element type: its code in the magic, its size in the file, the tensor
/// dtype it becomes (i8 and i16 widen to i32: there are no narrower signed dtypes).
struct idx_type {
  std::uint8_t code;
  std::size_t size;
  dtype type;
  const char* name;
};
constexpr idx_type idx_types[] = {
    {0x08, 1, dtype::u8, "u8"},   {0x09, 1, dtype::i32, "i8"},  {0x0B, 2, dtype::i32, "i16"},
    {0x0C, 4, dtype::i32, "i32"}, {0x0D, 4, dtype::f32, "f32"}, {0x0E, 8, dtype::f64, "f64"},
};

const idx_type* find_idx_type(std::uint8_t code) {
  for (const auto& t : idx_types)
    if (t.code == code)
      return &t;
  return nullptr;
}

std::string hex(std::uint64_t v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llx", digits, static_cast<unsigned long long>(v));
  return buf;
}

std::uint32_t load_be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

/// An open file descriptor, closed on scope exit.
class file_handle {
public:
  explicit file_handle(const std::filesystem::path& p) : path_(p) {
    fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      bad_file("IDX file", p, std::string{"cannot open: "} + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
      bad_file("IDX file", p, std::string{"cannot stat: "} + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
      bad_file("IDX file", p, "not a regular file");
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~file_handle() { ::close(fd_); }
  file_handle(const file_handle&) = delete;
  file_handle& operator=(const file_handle&) = delete;

  std::uint64_t size() const noexcept { return size_; }

  void rewind() {
    if (::lseek(fd_, 0, SEEK_SET) != 0)
      bad_file("IDX file", path_, std::string{"cannot seek: "} + std::strerror(errno));
  }

  /// Reads up to n bytes; fewer only at end of file.
  std::size_t read(void* dst, std::size_t n) {
    auto* p = static_cast<char*>(dst);
    std::size_t got = 0;
    while (got < n) {
      ssize_t r = ::read(fd_, p + got, n - got);
      if (r < 0) {
        if (errno == EINTR)
          continue;
        bad_file("IDX file", path_, std::string{"read failed: "} + std::strerror(errno));
      }
      if (r == 0)
        break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

/// The decompressed (or raw) byte stream of an IDX file, read in pieces so a
/// gzip file is never inflated beyond what the caller asks for.
class idx_stream {
public:
  idx_stream(const std::filesystem::path& p, file_handle& f, bool gzip)
      : path_(p), file_(f), gzip_(gzip) {
    if (gzip_) {
      in_.resize(64 * 1024);
      // 16 + MAX_WBITS: gzip wrapper only; zlib checks the CRC and length trailer.
      if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK)
        throw std::runtime_error("zlib inflateInit2 failed");
      zs_initialised_ = true;
    }
  }
  ~idx_stream() {
    if (zs_initialised_)
      inflateEnd(&zs_);
  }
  idx_stream(const idx_stream&) = delete;
  idx_stream& operator=(const idx_stream&) = delete;

  /// Reads up to n bytes; fewer only when the (decompressed) stream ends.
  std::size_t read(void* dst, std::size_t n) {
    if (!gzip_)
      return file_.read(dst, n);
    auto* out = static_cast<unsigned char*>(dst);
    std::size_t got = 0;
    while (got < n && !stream_end_) {
      if (zs_.avail_in == 0 && !file_eof_) {
        std::size_t r = file_.read(in_.data(), in_.size());
        file_eof_ = r < in_.size();
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(r);
      }
      const std::size_t chunk = std::min<std::size_t>(n - got, std::size_t{1} << 30);
      zs_.next_out = out + got;
      zs_.avail_out = static_cast<uInt>(chunk);
      int ret = inflate(&zs_, Z_NO_FLUSH);
      got += chunk - zs_.avail_out;
      if (ret == Z_STREAM_END) {
        stream_end_ = true;
      } else if (ret == Z_BUF_ERROR) {
        // No progress possible: fine only if more input can still be read.
        if (zs_.avail_in != 0 || file_eof_)
          bad_file("IDX file", path_,
                   "gzip stream is truncated (compressed data ends before the stream does)");
      } else if (ret != Z_OK) {
        bad_file("IDX file", path_,
                 std::string{"corrupt gzip data: "} + (zs_.msg ? zs_.msg : zError(ret)));
      }
    }
    return got;
  }

  /// Throws unless the stream ends exactly here: no more (decompressed) bytes
  /// and, for gzip, no bytes after the gzip stream.
  void expect_end() {
    unsigned char extra[64];
    std::size_t n = read(extra, sizeof extra);
    if (n > 0) {
      // Count the rest for the message (bounded by the file and never kept).
      std::uint64_t total = n;
      while ((n = read(extra, sizeof extra)) > 0)
        total += n;
      bad_file("IDX file", path_,
               std::to_string(total) + (gzip_ ? " decompressed" : "") +
                   " bytes follow the data the header describes (trailing garbage)");
    }
    if (gzip_) {
      std::uint64_t trailing = zs_.avail_in;
      unsigned char buf[4096];
      std::size_t r;
      while ((r = file_.read(buf, sizeof buf)) > 0)
        trailing += r;
      if (trailing > 0)
        bad_file("IDX file", path_,
                 std::to_string(trailing) + " bytes follow the end of the gzip stream");
    }
  }

private:
  std::filesystem::path path_;
  file_handle& file_;
  bool gzip_;
  z_stream zs_{};
  bool zs_initialised_ = false;
  std::vector<unsigned char> in_;
  bool file_eof_ = false;
  bool stream_end_ = false;
};

/// Reads the elements of `t` (all of them, `type` in the file, big-endian) from
/// `in` and converts them to host order and t's dtype; calls truncated(bytes read)
/// when the data ends early.
template <class Truncated>
void read_elements(idx_stream& in, const idx_type& type, tensor& t, Truncated truncated) {
  const std::uint64_t n = static_cast<std::uint64_t>(t.numel());
  if (type.size == element_size(t.type())) {
    // Same width: read in place, then swap bytes (u8 needs nothing).
    auto* p = static_cast<unsigned char*>(t.mutable_raw_data());
    const std::size_t bytes = n * type.size;
    const std::size_t got = in.read(p, bytes);
    if (got < bytes)
      truncated(got);
    for (std::size_t i = 0; type.size > 1 && i < bytes; i += type.size)
      std::reverse(p + i, p + i + type.size);
    return;
  }
  // i8 and i16 widen to i32, in pieces.
  auto* out = t.mutable_data<std::int32_t>();
  std::vector<unsigned char> buf(std::min<std::uint64_t>(n, 1 << 16) * type.size);
  for (std::uint64_t done = 0; done < n;) {
    const std::size_t k = std::min<std::uint64_t>(buf.size() / type.size, n - done);
    const std::size_t got = in.read(buf.data(), k * type.size);
    if (got < k * type.size)
      truncated(done * type.size + got);
    for (std::size_t i = 0; i < k; ++i)
      out[done + i] = type.size == 1
                          ? static_cast<std::int8_t>(buf[i])
                          : static_cast<std::int16_t>((buf[2 * i] << 8) | buf[2 * i + 1]);
    done += k;
  }
}

} // namespace

tensor read_idx(const std::filesystem::path& path, std::size_t max_bytes) {
  file_handle file{path};
  unsigned char sig[2] = {0, 0};
  const bool gzip = file.read(sig, 2) == 2 && sig[0] == 0x1f && sig[1] == 0x8b;
  file.rewind();
  if (path.extension() == ".gz" && !gzip)
    bad_file("IDX file", path, "has a .gz suffix but is not gzip data (no 1f 8b signature)");

  idx_stream in{path, file, gzip};
  unsigned char head[4];
  std::size_t n = in.read(head, 4);
  if (n < 4)
    bad_file("IDX file", path,
             "truncated: " + std::to_string(n) + " bytes, too short for the 4-byte magic");
  const std::uint32_t magic = load_be32(head);
  if (head[0] != 0 || head[1] != 0)
    bad_file("IDX file", path,
             "wrong magic " + hex(magic, 8) + ": an IDX file starts with two zero bytes");
  const idx_type* type = find_idx_type(head[2]);
  if (type == nullptr)
    bad_file("IDX file", path,
             "unsupported element type " + hex(head[2], 2) + " in magic " + hex(magic, 8) +
                 " (supported: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64)");
  const unsigned ndims = head[3];
  if (ndims < 1 || ndims > max_idx_dims)
    bad_file("IDX file", path,
             "magic " + hex(magic, 8) + " declares " + std::to_string(ndims) +
                 " dimensions (supported: 1 to " + std::to_string(max_idx_dims) + ")");

  unsigned char dims_raw[4 * max_idx_dims];
  n = in.read(dims_raw, 4 * ndims);
  if (n < 4 * ndims)
    bad_file("IDX file", path,
             "truncated: the header declares " + std::to_string(ndims) +
                 " dimensions but ends after " + std::to_string(n / 4));
  shape_t shape;
  std::uint64_t total = 1;
  for (unsigned i = 0; i < ndims; ++i) {
    std::uint32_t d = load_be32(dims_raw + 4 * i);
    shape.push_back(static_cast<std::int64_t>(d));
    if (__builtin_mul_overflow(total, std::uint64_t{d}, &total))
      bad_file("IDX file", path,
               "dimensions " + to_string(shape) + "... overflow the element count");
  }
  const std::uint64_t elements = total;
  if (__builtin_mul_overflow(elements, std::uint64_t{type->size}, &total) || total > max_bytes)
    bad_file("IDX file", path,
             "dimensions " + to_string(shape) + " of " + type->name + " describe " +
                 std::to_string(elements) + " x " + std::to_string(type->size) +
                 " bytes, more than the limit of " + std::to_string(max_bytes));

  const std::uint64_t header_bytes = 4 + 4ull * ndims;
  if (!gzip) {
    // A raw file's size is known: check it before allocating anything.
    const std::uint64_t expected = header_bytes + total;
    if (file.size() < expected)
      bad_file("IDX file", path,
               "truncated: dimensions " + to_string(shape) + " need " + std::to_string(expected) +
                   " bytes, the file has " + std::to_string(file.size()));
    if (file.size() > expected)
      bad_file("IDX file", path,
               std::to_string(file.size() - expected) +
                   " bytes follow the data the header describes (trailing garbage)");
  } else if (total / gzip_max_ratio > file.size()) {
    // Deflate expands at most ~1032:1: this header asks for more than the file can hold.
    bad_file("IDX file", path,
             "truncated: dimensions " + to_string(shape) + " need " + std::to_string(total) +
                 " data bytes, more than a gzip file of " + std::to_string(file.size()) +
                 " bytes can hold");
  }

  auto t = tensor::empty(type->type, shape);
  if (total > 0)
    read_elements(in, *type, t, [&](std::uint64_t got) {
      bad_file("IDX file", path,
               "truncated: dimensions " + to_string(shape) + " need " + std::to_string(total) +
                   " data bytes, " + (gzip ? "the decompressed stream has " : "the file has ") +
                   std::to_string(got));
    });
  in.expect_end();
  return t;
}

namespace {

std::filesystem::path find_mnist_file(const std::filesystem::path& dir, const std::string& name,
                                      const char* what) {
  std::error_code ec;
  for (auto candidate : {dir / name, dir / (name + ".gz")})
    if (std::filesystem::exists(candidate, ec))
      return candidate;
  throw input_error("MNIST directory '" + dir.string() + "': no " + what + " file (looked for " +
                    name + " and " + name + ".gz)");
}

} // namespace

mnist_split load_mnist(const std::filesystem::path& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const auto images_path = find_mnist_file(dir, prefix + "-images-idx3-ubyte",
                                           train ? "training images" : "test images");
  const auto labels_path = find_mnist_file(dir, prefix + "-labels-idx1-ubyte",
                                           train ? "training labels" : "test labels");

  mnist_split s{read_idx(images_path), read_idx(labels_path)};
  if (s.images.rank() != 3)
    throw input_error("MNIST images '" + images_path.string() + "' have shape " +
                      to_string(s.images.shape()) + ", expected [count, rows, cols]");
  if (s.labels.rank() != 1)
    throw input_error("MNIST labels '" + labels_path.string() + "' have shape " +
                      to_string(s.labels.shape()) + ", expected [count]");
  for (const auto& [t, p] :
       {std::pair{&s.images, &images_path}, std::pair{&s.labels, &labels_path}})
    if (t->type() != dtype::u8)
      throw input_error("MNIST file '" + p->string() + "' holds " +
                        std::string{to_string(t->type())} +
                        " elements, expected unsigned bytes (0x08)");
  if (s.images.dim(0) != s.labels.dim(0))
    throw input_error("MNIST split in '" + dir.string() + "': " + std::to_string(s.images.dim(0)) +
                      " images but " + std::to_string(s.labels.dim(0)) + " labels");
  auto labels = s.labels.values<std::uint8_t>();
  auto it = std::find_if(labels.begin(), labels.end(), [](std::uint8_t l) { return l >= 10; });
  if (it != labels.end())
    throw input_error("MNIST labels '" + labels_path.string() + "': label " + std::to_string(*it) +
                      " at index " + std::to_string(it - labels.begin()) +
                      " is not a digit (must be < 10)");
  return s;
}

} // namespace troupe::runtime
