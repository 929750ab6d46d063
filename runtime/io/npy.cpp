#include "runtime/io/npy.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/half.hpp"

namespace troupe::runtime {

static_assert(std::endian::native == std::endian::little,
              ".npy data is read as little-endian; a big-endian host would need byte swaps");

namespace {

constexpr std::array<unsigned char, 6> npy_magic = {0x93, 'N', 'U', 'M', 'P', 'Y'};

[[noreturn]] void bad_npy(std::string_view source, const std::string& what) {
  throw input_error(".npy " + std::string{source} + ": " + what);
}

/// How a .npy dtype is stored and which tensor dtype it becomes.
struct npy_type {
  dtype type;            ///< the tensor's dtype
  std::size_t item_size; ///< bytes per element in the file
  bool half = false;     ///< '<f2': widened to f32 while reading
};

std::optional<npy_type> npy_type_from_descr(std::string_view d) {
  if (d.size() < 2)
    return std::nullopt;
  const char order = d[0];
  const std::string_view code = d.substr(1);
  const bool one_byte = code == "u1" || code == "b1";
  // '|' (not applicable) is what NumPy writes for one-byte types, '<' otherwise;
  // '=' is native order, little-endian here.
  if (!(order == '<' || order == '=' || (order == '|' && one_byte)))
    return std::nullopt;
  if (one_byte)
    return npy_type{dtype::u8, 1};
  if (code == "i4")
    return npy_type{dtype::i32, 4};
  if (code == "i8")
    return npy_type{dtype::i64, 8};
  if (code == "f4")
    return npy_type{dtype::f32, 4};
  if (code == "f8")
    return npy_type{dtype::f64, 8};
  if (code == "f2")
    return npy_type{dtype::f32, 2, true};
  return std::nullopt;
}

/// The three fields of the header dict.
struct npy_header {
  std::string descr;
  bool fortran_order = false;
  shape_t shape;
};

/// A parser for the Python literal NumPy writes, e.g.
/// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class header_parser {
public:
  header_parser(std::string_view text, std::string_view source) : s_(text), source_(source) {}

  npy_header parse() {
    npy_header h;
    bool seen[3] = {false, false, false};
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = quoted();
      expect(':');
      if (key == "descr") {
        skip_ws();
        if (peek() == '[')
          fail("structured dtypes (a list as 'descr') are not supported");
        h.descr = quoted();
        seen[0] = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        seen[1] = true;
      } else if (key == "shape") {
        h.shape = tuple();
        seen[2] = true;
      } else {
        fail("unknown header key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',')
        ++i_;
    }
    skip_ws();
    if (i_ != s_.size())
      fail("unexpected text after the header dict");
    const char* names[3] = {"descr", "fortran_order", "shape"};
    for (int k = 0; k < 3; ++k)
      if (!seen[k])
        fail(std::string{"header has no '"} + names[k] + "'");
    return h;
  }

private:
  [[noreturn]] void fail(const std::string& what) const {
    bad_npy(source_, "malformed header " + std::string{s_.substr(0, 120)} + ": " + what);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n'))
      ++i_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c)
      fail(std::string{"expected '"} + c + "'");
    ++i_;
  }
  std::string quoted() {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"')
      fail("expected a quoted string");
    const auto end = s_.find(q, i_ + 1);
    if (end == std::string_view::npos)
      fail("unterminated string");
    std::string out{s_.substr(i_ + 1, end - i_ - 1)};
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_ws();
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    fail("fortran_order is neither True nor False");
  }
  shape_t tuple() {
    expect('(');
    shape_t shape;
    while (true) {
      skip_ws();
      if (peek() == ')') {
        ++i_;
        return shape;
      }
      std::int64_t v = 0;
      std::size_t digits = 0;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s_[i_] - '0', &v))
          fail("a shape extent overflows");
        ++i_;
        ++digits;
      }
      if (digits == 0)
        fail("shape is not a tuple of non-negative integers");
      shape.push_back(v);
      skip_ws();
      if (peek() == ',')
        ++i_;
      else if (peek() != ')')
        fail("expected ',' or ')' in shape");
    }
  }

  std::string_view s_;
  std::string_view source_;
  std::size_t i_ = 0;
};

void read_exact(const npy_read_fn& read, void* dst, std::size_t n, std::string_view source,
                const char* what) {
  const std::size_t got = read(dst, n);
  if (got < n)
    bad_npy(source, std::string{"truncated: "} + what + " needs " + std::to_string(n) +
                        " bytes, the data ends after " + std::to_string(got));
}

/// Reads n half floats into out as f32, in pieces (no second full-size buffer).
void read_halves(const npy_read_fn& read, float* out, std::size_t n, std::string_view source) {
  std::vector<std::uint16_t> buf(std::min<std::size_t>(n, 1 << 16));
  for (std::size_t done = 0; done < n;) {
    const std::size_t k = std::min(buf.size(), n - done);
    read_exact(read, buf.data(), k * 2, source, "the f2 data");
    std::transform(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(k), out + done,
                   half_to_float);
    done += k;
  }
}

/// NumPy's name of a dtype, as np.save writes it.
const char* npy_descr(dtype t) {
  switch (t) {
  case dtype::f32:
    return "<f4";
  case dtype::f64:
    return "<f8";
  case dtype::i32:
    return "<i4";
  case dtype::i64:
    return "<i8";
  case dtype::u8:
    return "|u1";
  }
  return "?";
}

std::string describe_descr(std::string_view d) {
  if (!d.empty() && d[0] == '>')
    return "big-endian dtype '" + std::string{d} +
           "' is not supported (save a little-endian array, e.g. "
           "a.astype(a.dtype.newbyteorder('<')))";
  return "unsupported dtype '" + std::string{d} +
         "' (supported: '|u1', '|b1', '<i4', '<i8', '<f2', '<f4', '<f8')";
}

} // namespace

tensor read_npy_stream(const npy_read_fn& read, std::uint64_t total_bytes,
                       std::string_view source) {
  unsigned char pre[12];
  if (total_bytes < 10)
    bad_npy(source, "truncated: " + std::to_string(total_bytes) +
                        " bytes, too short for the 10-byte .npy preamble");
  read_exact(read, pre, 8, source, "the preamble");
  if (!std::equal(npy_magic.begin(), npy_magic.end(), pre))
    bad_npy(source, "wrong magic: a .npy file starts with \\x93NUMPY");
  const unsigned major = pre[6];
  if (pre[7] != 0 || major < 1 || major > 3)
    bad_npy(source, "unsupported format version " + std::to_string(major) + "." +
                        std::to_string(pre[7]) + " (supported: 1.0, 2.0, 3.0)");
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  const std::uint64_t preamble = 8 + len_bytes;
  if (total_bytes < preamble)
    bad_npy(source, "truncated: the preamble ends early");
  read_exact(read, pre + 8, len_bytes, source, "the header length");
  std::uint64_t header_len = std::uint64_t{pre[8]} | std::uint64_t{pre[9]} << 8;
  if (len_bytes == 4)
    header_len |= std::uint64_t{pre[10]} << 16 | std::uint64_t{pre[11]} << 24;
  if (header_len > npy_max_header_bytes)
    bad_npy(source, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                        std::to_string(npy_max_header_bytes));
  if (header_len > total_bytes - preamble)
    bad_npy(source, "truncated: the header is " + std::to_string(header_len) + " bytes, only " +
                        std::to_string(total_bytes - preamble) + " follow the preamble");
  std::string text(static_cast<std::size_t>(header_len), '\0');
  read_exact(read, text.data(), text.size(), source, "the header");
  const npy_header h = header_parser{text, source}.parse();

  const auto type = npy_type_from_descr(h.descr);
  if (!type)
    bad_npy(source, describe_descr(h.descr));
  if (h.fortran_order)
    bad_npy(source, "fortran_order is True (column-major data); save a C-order array "
                    "(np.ascontiguousarray)");
  std::uint64_t numel = 1, data_bytes = 0;
  for (auto d : h.shape)
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(d), &numel))
      bad_npy(source, "shape " + to_string(h.shape) + " overflows the element count");
  if (__builtin_mul_overflow(numel, type->item_size, &data_bytes) ||
      numel > static_cast<std::uint64_t>(INT64_MAX))
    bad_npy(source, "shape " + to_string(h.shape) + " overflows the byte count");
  const std::uint64_t available = total_bytes - preamble - header_len;
  if (data_bytes > available)
    bad_npy(source, "truncated: shape " + to_string(h.shape) + " of '" + h.descr + "' needs " +
                        std::to_string(data_bytes) + " data bytes, only " +
                        std::to_string(available) + " follow the header");
  if (data_bytes < available)
    bad_npy(source, std::to_string(available - data_bytes) +
                        " bytes follow the data the header describes (trailing garbage)");

  auto t = tensor::empty(type->type, h.shape);
  if (type->half)
    read_halves(read, t.mutable_data<float>(), static_cast<std::size_t>(numel), source);
  else if (data_bytes > 0)
    read_exact(read, t.mutable_raw_data(), static_cast<std::size_t>(data_bytes), source,
               ("shape " + to_string(h.shape) + " of '" + h.descr + "'").c_str());
  return t;
}

tensor parse_npy(std::span<const std::byte> bytes, std::string_view source) {
  std::size_t pos = 0;
  return read_npy_stream(
      [&](void* dst, std::size_t n) {
        n = std::min(n, bytes.size() - pos);
        std::memcpy(dst, bytes.data() + pos, n);
        pos += n;
        return n;
      },
      bytes.size(), source);
}

tensor read_npy(const std::filesystem::path& path) {
  std::string source{"'"}; // appended: GCC 12 -Wrestrict false positive on "x" + string&&
  source += path.string();
  source += '\'';
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    bad_npy(source, std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
  const auto size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in)
    bad_npy(source, "cannot open");
  return read_npy_stream(
      [&](void* dst, std::size_t n) {
        in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
        if (in.bad())
          bad_npy(source, "read failed");
        return static_cast<std::size_t>(in.gcount());
      },
      size, source);
}

std::vector<std::byte> to_npy_bytes(const tensor& t) {
  if (!t.defined() || !t.where().is_cpu())
    throw std::invalid_argument("to_npy_bytes: the tensor is undefined or not in CPU memory");
  std::string shape = "(";
  for (std::size_t i = 0; i < t.rank(); ++i)
    shape += std::to_string(t.dim(i)) + (t.rank() == 1 || i + 1 < t.rank() ? "," : "") +
             (i + 1 < t.rank() ? " " : "");
  shape += ")";
  std::string header = std::string{"{'descr': '"} + npy_descr(t.type()) +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so the data starts at a multiple of 64 bytes, ending in '\n'.
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::vector<std::byte> out(10 + header.size() + t.nbytes());
  std::memcpy(out.data(), npy_magic.data(), 6);
  out[6] = std::byte{1};
  out[7] = std::byte{0};
  out[8] = std::byte(header.size() & 0xff);
  out[9] = std::byte(header.size() >> 8);
  std::memcpy(out.data() + 10, header.data(), header.size());
  if (t.nbytes())
    std::memcpy(out.data() + 10 + header.size(), t.raw_data(), t.nbytes());
  return out;
}

void write_npy(const std::filesystem::path& path, const tensor& t) {
  write_file_atomically(path, to_npy_bytes(t));
}

} // namespace troupe::runtime
