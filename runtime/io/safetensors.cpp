#include "runtime/io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/half.hpp"

namespace troupe::runtime {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; a big-endian host would need byte swaps");

namespace {

using json = nlohmann::json;
constexpr std::string_view metadata_key = "__metadata__";

/// Half-precision file dtypes, widened to f32 when read (no f16 tensor dtype).
enum class half_kind : std::uint8_t { none, f16, bf16 };

/// A file dtype: the tensor dtype it becomes, and how it is stored.
struct file_dtype {
  dtype type;
  half_kind half = half_kind::none;
  std::size_t size() const noexcept { return half == half_kind::none ? element_size(type) : 2; }
};

/// One validated header entry.
struct entry {
  std::string name;
  dtype type;
  half_kind half = half_kind::none;
  shape_t shape;
  std::uint64_t begin;
  std::uint64_t end;
};

struct parsed_header {
  std::vector<entry> entries;
  std::map<std::string, std::string> metadata;
};

[[noreturn]] void bad_safetensors(std::string_view source, const std::string& what) {
  throw input_error("safetensors " + std::string{source} + ": " + what);
}

std::optional<file_dtype> dtype_from_name(std::string_view s) {
  if (s == "F32")
    return file_dtype{dtype::f32};
  if (s == "F64")
    return file_dtype{dtype::f64};
  if (s == "I32")
    return file_dtype{dtype::i32};
  if (s == "I64")
    return file_dtype{dtype::i64};
  if (s == "U8")
    return file_dtype{dtype::u8};
  if (s == "F16")
    return file_dtype{dtype::f32, half_kind::f16};
  if (s == "BF16")
    return file_dtype{dtype::f32, half_kind::bf16};
  return std::nullopt;
}

std::uint64_t load_le64(const std::byte* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v); // host is little-endian (static_assert above)
  return v;
}

/// Validates the 8-byte prefix against the total size; returns the header length.
std::uint64_t check_header_length(std::uint64_t header_len, std::uint64_t total,
                                  std::string_view source) {
  if (header_len > safetensors_max_header_bytes)
    bad_safetensors(source, "header length " + std::to_string(header_len) +
                                " exceeds the limit of " +
                                std::to_string(safetensors_max_header_bytes) + " bytes");
  if (header_len > total - 8)
    bad_safetensors(source, "header length " + std::to_string(header_len) + " exceeds the " +
                                std::to_string(total - 8) + " bytes that follow the length prefix");
  if (header_len < 2)
    bad_safetensors(source, "header length " + std::to_string(header_len) +
                                " is too short for a JSON object");
  return header_len;
}

std::string json_quote(const std::string& s) {
  try {
    return json(s).dump();
  } catch (const json::exception&) {
    throw std::invalid_argument("safetensors: name or metadata string is not valid UTF-8");
  }
}

/// Parses the JSON with a callback that rejects duplicate keys (nlohmann would
/// silently keep the last one) and nesting deeper than the format has.
json parse_json(std::string_view text, std::string_view source) {
  std::vector<std::set<std::string>> keys; // one set per open object
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
    case json::parse_event_t::object_start:
    case json::parse_event_t::array_start:
      if (depth > 2)
        bad_safetensors(source, "header JSON nests deeper than the format allows");
      if (ev == json::parse_event_t::object_start)
        keys.emplace_back();
      break;
    case json::parse_event_t::object_end:
      if (!keys.empty())
        keys.pop_back();
      break;
    case json::parse_event_t::key: {
      auto k = parsed.get<std::string>();
      if (!keys.empty() && !keys.back().insert(k).second)
        bad_safetensors(source, depth <= 1 ? "duplicate tensor name '" + k + "' in header"
                                           : "duplicate field '" + k + "' in header");
      break;
    }
    default:
      break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    bad_safetensors(source, std::string{"header is not valid JSON: "} + e.what());
  }
}

std::uint64_t get_uint(const json& v, std::string_view source, const std::string& what) {
  if (v.is_number_unsigned())
    return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0)
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  if (v.is_number_integer())
    bad_safetensors(source, what + " is negative (" + v.dump() + ")");
  bad_safetensors(source, what + " is not a non-negative integer (" + v.dump() + ")");
}

entry parse_entry(const std::string& name, const json& v, std::uint64_t buffer_size,
                  std::string_view source) {
  const std::string where = "tensor '" + name + "'";
  if (!v.is_object())
    bad_safetensors(source, where + ": entry is not an object");
  for (auto it = v.begin(); it != v.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      bad_safetensors(source, where + ": unknown field '" + it.key() + "'");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field))
      bad_safetensors(source, where + ": missing field '" + field + "'");

  entry e;
  e.name = name;
  const auto& dt = v["dtype"];
  if (!dt.is_string())
    bad_safetensors(source, where + ": dtype is not a string");
  auto t = dtype_from_name(dt.get<std::string>());
  if (!t)
    bad_safetensors(source, where + ": unknown or unsupported dtype '" + dt.get<std::string>() +
                                "' (supported: F32, F64, I32, I64, U8, F16 and BF16 read as F32)");
  e.type = t->type;
  e.half = t->half;

  const auto& sh = v["shape"];
  if (!sh.is_array())
    bad_safetensors(source, where + ": shape is not an array");
  std::uint64_t numel = 1;
  bool overflow = false;
  for (std::size_t i = 0; i < sh.size(); ++i) {
    auto d = get_uint(sh[i], source, where + ": shape[" + std::to_string(i) + "]");
    if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      bad_safetensors(source, where + ": shape[" + std::to_string(i) + "] = " + std::to_string(d) +
                                  " is too large");
    e.shape.push_back(static_cast<std::int64_t>(d));
    overflow = overflow || __builtin_mul_overflow(numel, d, &numel);
  }
  std::uint64_t nbytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, t->size(), &nbytes) ||
             numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (overflow)
    bad_safetensors(source,
                    where + ": shape " + to_string(e.shape) + " overflows the size computation");

  const auto& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    bad_safetensors(source, where + ": data_offsets is not an array of two integers");
  e.begin = get_uint(off[0], source, where + ": data_offsets[0]");
  e.end = get_uint(off[1], source, where + ": data_offsets[1]");
  if (e.begin > e.end)
    bad_safetensors(source, where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                                std::to_string(e.end) + "] has begin after end");
  if (e.end > buffer_size)
    bad_safetensors(source, where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                                std::to_string(e.end) + "] lie outside the " +
                                std::to_string(buffer_size) + "-byte data buffer");
  if (e.end - e.begin != nbytes)
    bad_safetensors(source, where + ": shape " + to_string(e.shape) + " of " +
                                dt.get<std::string>() + " needs " + std::to_string(nbytes) +
                                " bytes but data_offsets [" + std::to_string(e.begin) + ", " +
                                std::to_string(e.end) + "] span " +
                                std::to_string(e.end - e.begin));
  return e;
}

/// Validates the whole header against a data buffer of `buffer_size` bytes.
parsed_header parse_header(std::string_view text, std::uint64_t buffer_size,
                           std::string_view source) {
  json doc = parse_json(text, source);
  if (!doc.is_object())
    bad_safetensors(source, "header is not a JSON object");

  parsed_header h;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.key() == metadata_key) {
      if (it->is_null())
        continue;
      if (!it->is_object())
        bad_safetensors(source, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          bad_safetensors(source, "__metadata__ value for '" + m.key() + "' is not a string");
        h.metadata.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    h.entries.push_back(parse_entry(it.key(), *it, buffer_size, source));
  }

  // The entries must tile the buffer: sorted by offset, each starts where the
  // previous one ended, and the last ends at the buffer's end.
  std::vector<const entry*> by_offset;
  by_offset.reserve(h.entries.size());
  for (const auto& e : h.entries)
    by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const entry* a, const entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t pos = 0;
  const entry* prev = nullptr;
  for (const entry* e : by_offset) {
    if (e->begin < pos)
      bad_safetensors(source, "tensor '" + e->name + "' (data_offsets [" +
                                  std::to_string(e->begin) + ", " + std::to_string(e->end) +
                                  "]) overlaps tensor '" + prev->name + "'");
    if (e->begin > pos)
      bad_safetensors(source, "tensor '" + e->name + "' starts at offset " +
                                  std::to_string(e->begin) + " leaving bytes [" +
                                  std::to_string(pos) + ", " + std::to_string(e->begin) +
                                  ") of the data buffer unused");
    pos = e->end;
    prev = e;
  }
  if (pos != buffer_size)
    bad_safetensors(source, "tensors cover " + std::to_string(pos) + " bytes of the " +
                                std::to_string(buffer_size) + "-byte data buffer");

  std::sort(h.entries.begin(), h.entries.end(),
            [](const entry& a, const entry& b) { return a.name < b.name; });
  return h;
}

/// Allocates each tensor and fills it with `fill(dst, file_offset_in_buffer, n)`.
template <class Fill>
safetensors_file materialise(parsed_header&& h, Fill fill) {
  safetensors_file out;
  out.metadata = std::move(h.metadata);
  out.tensors.reserve(h.entries.size());
  for (auto& e : h.entries) {
    auto t = tensor::empty(e.type, std::move(e.shape));
    if (e.half != half_kind::none && t.numel() > 0) {
      std::vector<std::uint16_t> halves(static_cast<std::size_t>(t.numel()));
      fill(halves.data(), e.begin, halves.size() * 2);
      std::transform(halves.begin(), halves.end(), t.mutable_data<float>(),
                     e.half == half_kind::f16 ? half_to_float : bfloat16_to_float);
    } else if (t.nbytes()) {
      fill(t.mutable_raw_data(), e.begin, t.nbytes());
    }
    out.tensors.emplace_back(std::move(e.name), std::move(t));
  }
  return out;
}

/// Tensor order for writing: sorted by name, with argument checks.
std::vector<const std::pair<std::string, tensor>*>
sorted_for_writing(std::span<const std::pair<std::string, tensor>> tensors) {
  std::vector<const std::pair<std::string, tensor>*> order;
  order.reserve(tensors.size());
  for (const auto& p : tensors) {
    if (p.first == metadata_key)
      throw std::invalid_argument(
          "safetensors: '__metadata__' is reserved and cannot name a tensor");
    if (!p.second.defined())
      throw std::invalid_argument("safetensors: tensor '" + p.first + "' is undefined");
    if (!p.second.where().is_cpu())
      throw std::invalid_argument("safetensors: tensor '" + p.first + "' is not in CPU memory");
    order.push_back(&p);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (std::size_t i = 1; i < order.size(); ++i)
    if (order[i]->first == order[i - 1]->first)
      throw std::invalid_argument("safetensors: duplicate tensor name '" + order[i]->first + "'");
  return order;
}

std::string header_for(const std::vector<const std::pair<std::string, tensor>*>& order,
                       const std::map<std::string, std::string>& metadata) {
  std::string j = "{";
  bool first = true;
  if (!metadata.empty()) {
    j += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first)
        j += ',';
      first = false;
      j += json_quote(k) + ':' + json_quote(v);
    }
    j += '}';
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto* p : order) {
    if (!first)
      j += ',';
    first = false;
    const tensor& t = p->second;
    j += json_quote(p->first) + ":{\"dtype\":\"" + std::string{safetensors_dtype_name(t.type())} +
         "\",\"shape\":[";
    for (std::size_t i = 0; i < t.rank(); ++i) {
      if (i)
        j += ',';
      j += std::to_string(t.dim(i));
    }
    j += "],\"data_offsets\":[" + std::to_string(offset) + ',' +
         std::to_string(offset + t.nbytes()) + "]}";
    offset += t.nbytes();
  }
  j += '}';
  // Pad with spaces so the data buffer starts 8-byte aligned (as Python does).
  j.append((8 - j.size() % 8) % 8, ' ');

  std::string out(8, '\0');
  std::uint64_t n = j.size();
  std::memcpy(out.data(), &n, sizeof n);
  return out + j;
}

std::span<const std::byte> tensor_bytes(const tensor& t) {
  return {static_cast<const std::byte*>(t.raw_data()), t.nbytes()};
}

/// pread exactly n bytes or throw (a short read means the file was truncated
/// or changed while it was read).
void pread_exact(int fd, void* dst, std::size_t n, std::uint64_t offset, std::string_view source) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR)
        continue;
      bad_safetensors(source, std::string{"read failed: "} + std::strerror(errno));
    }
    if (r == 0)
      bad_safetensors(source, "file was truncated while reading");
    p += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
}

} // namespace

const tensor& safetensors_file::at(std::string_view name) const {
  for (const auto& [n, t] : tensors)
    if (n == name)
      return t;
  throw std::out_of_range("safetensors_file: no tensor named '" + std::string{name} + "'");
}

std::string_view safetensors_dtype_name(dtype t) noexcept {
  switch (t) {
  case dtype::f32:
    return "F32";
  case dtype::f64:
    return "F64";
  case dtype::i32:
    return "I32";
  case dtype::i64:
    return "I64";
  case dtype::u8:
    return "U8";
  }
  return "?";
}

std::string safetensors_header(std::span<const std::pair<std::string, tensor>> tensors,
                               const std::map<std::string, std::string>& metadata) {
  return header_for(sorted_for_writing(tensors), metadata);
}

std::vector<std::byte> to_safetensors_bytes(std::span<const std::pair<std::string, tensor>> tensors,
                                            const std::map<std::string, std::string>& metadata) {
  auto order = sorted_for_writing(tensors);
  auto header = header_for(order, metadata);
  std::size_t total = header.size();
  for (const auto* p : order)
    total += p->second.nbytes();
  std::vector<std::byte> out;
  out.reserve(total);
  auto h = string_bytes(header);
  out.insert(out.end(), h.begin(), h.end());
  for (const auto* p : order) {
    auto b = tensor_bytes(p->second);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path,
                       std::span<const std::pair<std::string, tensor>> tensors,
                       const std::map<std::string, std::string>& metadata) {
  auto order = sorted_for_writing(tensors);
  const std::string header = header_for(order, metadata);
  std::vector<std::span<const std::byte>> buffers;
  buffers.reserve(order.size() + 1);
  buffers.push_back(string_bytes(header));
  for (const auto* p : order)
    buffers.push_back(tensor_bytes(p->second));
  write_file_atomically(path, std::span<const std::span<const std::byte>>{buffers});
}

safetensors_file parse_safetensors(std::span<const std::byte> bytes, std::string_view source) {
  if (bytes.size() < 8)
    bad_safetensors(source, std::to_string(bytes.size()) +
                                " bytes is too short for the 8-byte header length prefix");
  const std::uint64_t n = check_header_length(load_le64(bytes.data()), bytes.size(), source);
  std::string_view text{reinterpret_cast<const char*>(bytes.data() + 8),
                        static_cast<std::size_t>(n)};
  const std::byte* buffer = bytes.data() + 8 + n;
  auto h = parse_header(text, bytes.size() - 8 - n, source);
  return materialise(std::move(h), [&](void* dst, std::uint64_t begin, std::size_t len) {
    std::memcpy(dst, buffer + begin, len);
  });
}

safetensors_file read_safetensors(const std::filesystem::path& path) {
  std::string source{"'"}; // appended: GCC 12 -Wrestrict false positive on "x" + string&&
  source += path.string();
  source += '\'';
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    bad_safetensors(source, std::string{"cannot open: "} + std::strerror(errno));
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_on_exit{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0)
    bad_safetensors(source, std::string{"cannot stat: "} + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    bad_safetensors(source, "not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < 8)
    bad_safetensors(source, "file is " + std::to_string(size) +
                                " bytes, too short for the 8-byte header length prefix");

  std::byte prefix[8];
  pread_exact(fd, prefix, 8, 0, source);
  const std::uint64_t n = check_header_length(load_le64(prefix), size, source);
  std::string text(static_cast<std::size_t>(n), '\0');
  pread_exact(fd, text.data(), text.size(), 8, source);
  auto h = parse_header(text, size - 8 - n, source);
  const std::uint64_t base = 8 + n;
  return materialise(std::move(h), [&](void* dst, std::uint64_t begin, std::size_t len) {
    pread_exact(fd, dst, len, base + begin, source);
  });
}

} // namespace troupe::runtime
