#include "runtime/io/npz.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#include <zip.h>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/npy.hpp"

namespace troupe::runtime {

namespace {

/// Deflate's largest expansion is about 1032:1; a member declaring more than this
/// is corrupt or hostile, and is refused before its tensor is allocated.
constexpr std::uint64_t max_deflate_ratio = 1032;

std::string zip_message(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string m = zip_error_strerror(&e);
  zip_error_fini(&e);
  return m;
}

struct archive_closer {
  void operator()(zip_t* z) const { zip_discard(z); }
};
using archive = std::unique_ptr<zip_t, archive_closer>;

struct member_closer {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

archive open_archive(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    bad_file(".npz", path,
             std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
  char magic[4] = {};
  std::ifstream(path, std::ios::binary).read(magic, 4);
  if (std::memcmp(magic, "PK\x03\x04", 4) != 0 && std::memcmp(magic, "PK\x05\x06", 4) != 0)
    bad_file(".npz", path, "wrong magic: an .npz is a zip archive, starting with \"PK\\x03\\x04\"");
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (z == nullptr)
    bad_file(".npz", path, "corrupt or truncated zip archive: " + zip_message(err));
  return archive{z};
}

/// (array name, member index) of every NAME.npy member.
std::vector<std::pair<std::string, zip_uint64_t>> list_members(zip_t* z) {
  std::vector<std::pair<std::string, zip_uint64_t>> out;
  const zip_int64_t n = zip_get_num_entries(z, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* name = zip_get_name(z, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_GUESS);
    std::string_view s = name ? name : "";
    if (s.size() > 4 && s.substr(s.size() - 4) == ".npy")
      out.emplace_back(std::string{s.substr(0, s.size() - 4)}, static_cast<zip_uint64_t>(i));
  }
  return out;
}

tensor read_member(zip_t* z, const std::filesystem::path& path, const std::string& name,
                   zip_uint64_t index, std::uint64_t archive_size) {
  std::string source{"'"};
  source += path.string();
  source += "' array '" + name + "'";
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(z, index, 0, &st) != 0)
    bad_file(".npz", path, "array '" + name + "': " + zip_strerror(z));
  if ((st.valid & ZIP_STAT_SIZE) == 0 || (st.valid & ZIP_STAT_COMP_SIZE) == 0)
    bad_file(".npz", path, "array '" + name + "': the archive does not record its size");
  const bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
  if (st.comp_size > archive_size)
    bad_file(".npz", path,
             "array '" + name + "': declares " + std::to_string(st.comp_size) +
                 " compressed bytes, more than the archive's " + std::to_string(archive_size) +
                 " (truncated or corrupt archive)");
  if (stored ? st.size != st.comp_size : st.size / max_deflate_ratio > st.comp_size + 1)
    bad_file(".npz", path,
             "array '" + name + "': declares " + std::to_string(st.size) + " bytes from " +
                 std::to_string(st.comp_size) +
                 " compressed bytes, more than the compression can produce (corrupt archive)");
  std::unique_ptr<zip_file_t, member_closer> f{zip_fopen_index(z, index, 0)};
  if (!f)
    bad_file(".npz", path, "array '" + name + "': cannot open the member: " + zip_strerror(z));
  auto read = [&](void* dst, std::size_t n) -> std::size_t {
    const zip_int64_t r = zip_fread(f.get(), dst, n);
    if (r < 0)
      bad_file(".npz", path,
               "array '" + name + "': corrupt member data: " + zip_file_strerror(f.get()));
    return static_cast<std::size_t>(r);
  };
  tensor t = read_npy_stream(read, st.size, source);
  // Read past the end so libzip checks the CRC and that the data ends where it said.
  char extra;
  if (read(&extra, 1) != 0)
    bad_file(".npz", path,
             "array '" + name + "': the member holds more than its declared " +
                 std::to_string(st.size) + " bytes");
  return t;
}

} // namespace

const tensor& npz_file::at(std::string_view name) const {
  for (const auto& [n, t] : arrays)
    if (n == name)
      return t;
  throw std::out_of_range("npz: no array '" + std::string{name} + "'");
}

std::vector<std::string> npz_array_names(const std::filesystem::path& path) {
  auto z = open_archive(path);
  std::vector<std::string> names;
  for (auto& [name, index] : list_members(z.get()))
    names.push_back(name);
  return names;
}

npz_file read_npz(const std::filesystem::path& path, std::span<const std::string> names) {
  auto z = open_archive(path);
  const auto members = list_members(z.get());
  const std::uint64_t size = std::filesystem::file_size(path);
  npz_file out;
  if (names.empty()) {
    for (const auto& [name, index] : members)
      out.arrays.emplace_back(name, read_member(z.get(), path, name, index, size));
    return out;
  }
  for (const auto& want : names) {
    auto it = std::find_if(members.begin(), members.end(),
                           [&](const auto& m) { return m.first == want; });
    if (it == members.end()) {
      std::string present;
      for (const auto& m : members)
        present += (present.empty() ? "'" : ", '") + m.first + "'";
      bad_file(".npz", path,
               "no array '" + want + "' (the archive holds " +
                   (present.empty() ? std::string{"no .npy arrays"} : present) + ")");
    }
    out.arrays.emplace_back(want, read_member(z.get(), path, want, it->second, size));
  }
  return out;
}

void write_npz(const std::filesystem::path& path,
               std::span<const std::pair<std::string, tensor>> arrays, bool compress) {
  // The images must outlive the archive: libzip reads its sources at zip_close.
  std::vector<std::vector<std::byte>> images;
  images.reserve(arrays.size());
  for (const auto& [name, t] : arrays)
    images.push_back(to_npy_bytes(t));
  int err = 0;
  archive z{zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err)};
  if (!z)
    bad_file(".npz", path, "cannot create: " + zip_message(err));
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    const std::string member = arrays[i].first + ".npy";
    zip_source_t* src = zip_source_buffer(z.get(), images[i].data(), images[i].size(), 0);
    const zip_int64_t index =
        src ? zip_file_add(z.get(), member.c_str(), src, ZIP_FL_ENC_UTF_8) : -1;
    if (index < 0) {
      if (src)
        zip_source_free(src);
      bad_file(".npz", path, "cannot add '" + member + "': " + zip_strerror(z.get()));
    }
    if (zip_set_file_compression(z.get(), static_cast<zip_uint64_t>(index),
                                 compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) != 0)
      bad_file(".npz", path,
               "cannot set the compression of '" + member + "': " + zip_strerror(z.get()));
  }
  if (zip_close(z.get()) != 0)
    bad_file(".npz", path, std::string{"cannot write: "} + zip_strerror(z.get()));
  z.release(); // closed: zip_close freed it
}

} // namespace troupe::runtime
