#include "runtime/io/labeled_arrays.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/io/csv_table.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/idx.hpp"
#include "runtime/io/npz.hpp"
#include "runtime/io/safetensors.hpp"

namespace troupe::runtime {

namespace {

namespace fs = std::filesystem;

enum class file_format { npz, safetensors, csv, idx_pair };

const char* format_name(file_format f) {
  switch (f) {
  case file_format::npz:
    return ".npz";
  case file_format::safetensors:
    return ".safetensors";
  case file_format::csv:
    return "CSV";
  case file_format::idx_pair:
    return "IDX pair";
  }
  return "?";
}

/// One file's (or one IDX directory's) arrays before checks, and what to call
/// them in messages.
struct raw_arrays {
  tensor x, y;
  std::string x_name, y_name;       ///< e.g. "array 'x'", "column 'price'"
  std::string summary;              ///< for labeled_arrays::source
  std::vector<std::string> columns; ///< CSV: the header, which shards must share
};

bool is_idx_magic(const unsigned char* b, std::size_t n) {
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
    return true; // gzip: MNIST's .gz files
  constexpr std::array<unsigned char, 6> types = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E};
  return n >= 4 && b[0] == 0 && b[1] == 0 &&
         std::find(types.begin(), types.end(), b[2]) != types.end() && b[3] >= 1 && b[3] <= 8;
}

/// The format of a regular file, from its first bytes (the suffix only for CSV,
/// which has no magic).
file_format sniff(const fs::path& p) {
  unsigned char b[16] = {};
  std::ifstream in(p, std::ios::binary);
  if (!in)
    bad_file("data", p, "cannot open");
  in.read(reinterpret_cast<char*>(b), sizeof b);
  const auto n = static_cast<std::size_t>(in.gcount());
  if (n >= 4 && b[0] == 'P' && b[1] == 'K' &&
      ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6)))
    return file_format::npz;
  if (n >= 6 && std::memcmp(b, "\x93NUMPY", 6) == 0)
    bad_file("data", p,
             "a .npy file holds one array, and training needs inputs and targets: save both in "
             "an .npz (np.savez(FILE, x=inputs, y=targets))");
  if (n >= 9 && b[8] == '{' && b[6] == 0 && b[7] == 0)
    return file_format::safetensors; // a little-endian u64 header length, then JSON
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext == ".csv")
    return file_format::csv;
  if (is_idx_magic(b, n))
    bad_file("data", p,
             "an IDX file holds one array: give the directory holding the images and labels IDX "
             "files");
  bad_file("data", p,
           "wrong magic: not an .npz (zip), .safetensors, IDX directory or .csv file (a CSV file "
           "needs the .csv suffix)");
}

raw_arrays read_npz_pair(const fs::path& p, const array_names& names) {
  const std::vector<std::string> want = {names.x, names.y};
  auto f = read_npz(p, want);
  return {f.arrays[0].second,
          f.arrays[1].second,
          "array '" + names.x + "'",
          "array '" + names.y + "'",
          p.filename().string() + " (" + names.x + ", " + names.y + ")",
          {}};
}

raw_arrays read_safetensors_pair(const fs::path& p, const array_names& names) {
  auto f = read_safetensors(p);
  auto get = [&](const std::string& name) {
    for (auto& [n, t] : f.tensors)
      if (n == name)
        return t;
    std::string present;
    for (const auto& [n, t] : f.tensors)
      present += (present.empty() ? "'" : ", '") + n + "'";
    bad_file("data", p,
             "no array '" + name + "' (the file holds " +
                 (present.empty() ? std::string{"no tensors"} : present) + ")");
  };
  return {get(names.x),
          get(names.y),
          "array '" + names.x + "'",
          "array '" + names.y + "'",
          p.filename().string() + " (" + names.x + ", " + names.y + ")",
          {}};
}

raw_arrays read_csv_pair(const fs::path& p, const array_names& names) {
  const csv_table t = read_csv(p);
  const std::size_t target = t.column(names.y);
  const std::int64_t rows = t.values.dim(0);
  const auto cols = static_cast<std::int64_t>(t.columns.size());
  if (cols < 2)
    bad_file("data", p, "the only column is the target '" + names.y + "': no feature columns");
  const float* v = t.values.data<float>();
  auto x = tensor::empty(dtype::f32, {rows, cols - 1});
  float* xo = x.mutable_data<float>();
  const bool labels = t.integral[target];
  auto y = tensor::empty(labels ? dtype::i32 : dtype::f32, {rows});
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = v + r * cols;
    for (std::int64_t c = 0; c < cols; ++c)
      if (static_cast<std::size_t>(c) != target)
        *xo++ = row[c];
    if (labels)
      y.mutable_data<std::int32_t>()[r] = static_cast<std::int32_t>(row[target]);
    else
      y.mutable_data<float>()[r] = row[target];
  }
  return {x,
          y,
          "the feature columns",
          "column '" + names.y + "'",
          p.filename().string() + " (target '" + names.y + "', " + std::to_string(cols - 1) +
              " feature columns)",
          t.columns};
}

bool has_idx_magic(const fs::path& p) {
  unsigned char b[4] = {};
  std::ifstream in(p, std::ios::binary);
  in.read(reinterpret_cast<char*>(b), sizeof b);
  return is_idx_magic(b, static_cast<std::size_t>(in.gcount()));
}

/// The IDX files of `dir` whose name contains `kind` ("images" or "labels").
std::vector<fs::path> idx_files(const fs::path& dir, std::string_view kind) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string().find(kind) != std::string::npos &&
        has_idx_magic(e.path()))
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

/// The one file of `files` for the split: named train* (train) or t10k*/test* (test);
/// a lone file with no split prefix counts as training data. A raw file wins over
/// its .gz twin, as load_mnist does.
fs::path pick_split(const fs::path& dir, const std::vector<fs::path>& files, bool train,
                    const char* kind) {
  auto starts = [](const fs::path& f, std::string_view s) {
    return f.filename().string().rfind(s, 0) == 0;
  };
  std::vector<fs::path> match;
  bool any_prefix = false;
  for (const auto& f : files) {
    const bool is_train = starts(f, "train"), is_test = starts(f, "t10k") || starts(f, "test");
    any_prefix = any_prefix || is_train || is_test;
    if ((train && is_train) || (!train && is_test))
      match.push_back(f);
  }
  if (!any_prefix && train)
    match = files;
  if (match.size() == 2 && match[1].string() == match[0].string() + ".gz")
    match.pop_back();
  if (match.size() != 1)
    bad_file("data", dir,
             std::to_string(match.size()) + " IDX " + kind + " files for the " +
                 (train ? "training split (named train*)" : "test split (named t10k* or test*)") +
                 ", expected one");
  return match[0];
}

std::optional<raw_arrays> read_idx_pair(const fs::path& dir, bool train) {
  const auto images = idx_files(dir, "images"), labels = idx_files(dir, "labels");
  if (images.empty() && labels.empty())
    return std::nullopt;
  const auto xi = pick_split(dir, images, train, "images");
  const auto yi = pick_split(dir, labels, train, "labels");
  return raw_arrays{read_idx(xi),
                    read_idx(yi),
                    "IDX file '" + xi.filename().string() + "'",
                    "IDX file '" + yi.filename().string() + "'",
                    dir.filename().string() + "/ (" + xi.filename().string() + ", " +
                        yi.filename().string() + ")",
                    {}};
}

raw_arrays read_one(const fs::path& p, const array_names& names, bool train, file_format& format) {
  if (fs::is_directory(p)) {
    format = file_format::idx_pair;
    if (auto r = read_idx_pair(p, train))
      return *std::move(r);
    bad_file("data", p,
             "a directory inside a directory of shards must hold an IDX images/labels pair");
  }
  format = sniff(p);
  switch (format) {
  case file_format::npz:
    return read_npz_pair(p, names);
  case file_format::safetensors:
    return read_safetensors_pair(p, names);
  case file_format::csv:
    return read_csv_pair(p, names);
  case file_format::idx_pair:
    break;
  }
  bad_file("data", p, "unreachable format");
}

/// x or y after the dtype conversions of the header comment, with every float checked finite.
tensor to_stored_dtype(const fs::path& p, const std::string& what, const tensor& t, bool labels) {
  tensor out = t;
  if (t.type() == dtype::f64) {
    out = tensor::empty(dtype::f32, t.shape());
    std::transform(t.values<double>().begin(), t.values<double>().end(), out.mutable_data<float>(),
                   [](double v) { return static_cast<float>(v); });
  } else if (t.type() == dtype::i64 || (labels && t.type() == dtype::u8)) {
    out = tensor::empty(dtype::i32, t.shape());
    auto* o = out.mutable_data<std::int32_t>();
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const std::int64_t v =
          t.type() == dtype::u8 ? t.data<std::uint8_t>()[i] : t.data<std::int64_t>()[i];
      if (v < std::numeric_limits<std::int32_t>::min() ||
          v > std::numeric_limits<std::int32_t>::max())
        bad_file("data", p,
                 what + ": element " + std::to_string(i) + " = " + std::to_string(v) +
                     " does not fit in i32");
      o[i] = static_cast<std::int32_t>(v);
    }
  }
  if (out.type() == dtype::f32) {
    const auto v = out.values<float>();
    const auto it = std::find_if(v.begin(), v.end(), [](float f) { return !std::isfinite(f); });
    if (it != v.end()) {
      const auto i = it - v.begin();
      const auto row_len = out.numel() / std::max<std::int64_t>(out.dim(0), 1);
      bad_file("data", p,
               what + ": element " + std::to_string(i) + " (row " + std::to_string(i / row_len) +
                   ") is " + (std::isnan(*it) ? "NaN" : "infinite") +
                   (t.type() == dtype::f64 && !std::isnan(*it) ? " in f32" : ""));
    }
  }
  return out;
}

/// Checks and converts one source's arrays into the header comment's dtypes and shapes.
labeled_arrays finish(const fs::path& p, raw_arrays r) {
  if (r.x.rank() == 0 || r.y.rank() == 0)
    bad_file("data", p,
             (r.x.rank() == 0 ? r.x_name : r.y_name) + " is a scalar, expected one row per sample");
  if (r.x.dim(0) != r.y.dim(0))
    bad_file("data", p,
             r.x_name + " has " + std::to_string(r.x.dim(0)) + " rows but " + r.y_name + " has " +
                 std::to_string(r.y.dim(0)) + ": x and y need one row per sample each");
  if (r.x.dim(0) == 0)
    bad_file("data", p, "empty: " + r.x_name + " and " + r.y_name + " have no rows");
  const bool labels = r.y.type() != dtype::f32 && r.y.type() != dtype::f64;
  tensor x = to_stored_dtype(p, r.x_name, r.x, false);
  tensor y = to_stored_dtype(p, r.y_name, r.y, labels);
  if (x.rank() == 1)
    x = x.reshape({x.dim(0), 1});
  if (labels && y.rank() == 2 && y.dim(1) == 1)
    y = y.reshape({y.dim(0)});
  if (labels ? y.rank() != 1 : y.rank() > 2)
    bad_file("data", p,
             r.y_name + " has shape " + to_string(y.shape()) + ", expected " +
                 (labels ? "[N] (integer labels)" : "[N] or [N, K] (real-valued targets)"));
  return {x, y, r.summary};
}

/// The rows of `parts` (equal per-row shapes and dtypes) as one tensor.
tensor concat_rows(const std::vector<tensor>& parts) {
  shape_t shape = parts[0].shape();
  shape[0] = 0;
  for (const auto& t : parts)
    shape[0] += t.dim(0);
  auto out = tensor::empty(parts[0].type(), shape);
  auto* dst = static_cast<std::byte*>(out.mutable_raw_data());
  for (const auto& t : parts) {
    if (t.nbytes())
      std::memcpy(dst, t.raw_data(), t.nbytes());
    dst += t.nbytes();
  }
  return out;
}

shape_t sample_shape(const tensor& t) {
  return {t.shape().begin() + 1, t.shape().end()};
}

/// Every regular file (not hidden) and subdirectory of `dir`, in name order.
std::vector<fs::path> shard_paths(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind('.', 0) != 0 &&
        (e.is_regular_file() || e.is_directory()))
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  if (out.empty())
    bad_file("data", dir, "empty directory: no shards and no IDX images/labels pair");
  return out;
}

/// A CSV shard whose target column happens to hold only integers becomes real-valued
/// when another shard's does not: the column is one column.
void promote_csv_targets(std::vector<labeled_arrays>& shards) {
  const bool mixed = std::any_of(shards.begin(), shards.end(),
                                 [](const auto& s) { return s.y.type() == dtype::f32; });
  for (auto& s : shards)
    if (mixed && s.y.type() == dtype::i32) {
      auto f = tensor::empty(dtype::f32, s.y.shape());
      std::transform(s.y.values<std::int32_t>().begin(), s.y.values<std::int32_t>().end(),
                     f.mutable_data<float>(), [](std::int32_t v) { return static_cast<float>(v); });
      s.y = f;
    }
}

labeled_arrays read_shards(const fs::path& dir, const array_names& names, bool train) {
  const auto paths = shard_paths(dir);
  std::vector<labeled_arrays> shards;
  std::vector<std::string> columns;
  file_format first = file_format::npz;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    file_format f{};
    raw_arrays r = read_one(paths[i], names, train, f);
    if (i == 0) {
      first = f;
      columns = r.columns;
    } else if (f != first) {
      bad_file("data", paths[i],
               std::string{"shard is "} + format_name(f) + " but the first shard '" +
                   paths[0].filename().string() + "' is " + format_name(first));
    } else if (r.columns != columns) {
      bad_file("data", paths[i],
               "shard's CSV header differs from the first shard's '" +
                   paths[0].filename().string() + "'");
    }
    shards.push_back(finish(paths[i], std::move(r)));
  }
  if (first == file_format::csv)
    promote_csv_targets(shards);
  std::vector<tensor> xs, ys;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const auto& s = shards[i];
    for (auto [a, b, what] :
         {std::tuple{&s.x, &shards[0].x, "x"}, std::tuple{&s.y, &shards[0].y, "y"}})
      if (a->type() != b->type() || sample_shape(*a) != sample_shape(*b))
        bad_file("data", paths[i],
                 std::string{"shard's "} + what + " rows are " + std::string{to_string(a->type())} +
                     " " + to_string(sample_shape(*a)) + " but the first shard's '" +
                     paths[0].filename().string() + "' are " + std::string{to_string(b->type())} +
                     " " + to_string(sample_shape(*b)));
    xs.push_back(s.x);
    ys.push_back(s.y);
  }
  return {concat_rows(xs), concat_rows(ys),
          dir.filename().string() + "/ (" + std::to_string(shards.size()) + " " +
              format_name(first) + " shards, the first " + shards[0].source + ")"};
}

} // namespace

labeled_arrays read_labeled_arrays(const std::filesystem::path& path, const array_names& names,
                                   bool train_split) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    bad_file("data", path, "no such file or directory");
  if (fs::is_directory(path, ec)) {
    if (auto r = read_idx_pair(path, train_split))
      return finish(path, *std::move(r));
    return read_shards(path, names, train_split);
  }
  if (!fs::is_regular_file(path, ec))
    bad_file("data", path, "not a regular file or a directory");
  file_format f{};
  return finish(path, read_one(path, names, train_split, f));
}

} // namespace troupe::runtime
