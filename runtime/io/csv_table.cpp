#include "runtime/io/csv_table.hpp"

#include <charconv>
#include <cmath>
#include <limits>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::runtime {

namespace {

/// Largest integer magnitude every f32 holds exactly.
constexpr double max_exact_integer = 16777216.0;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

/// Splits one line on commas (no quoting: the cells are numbers).
void split(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  while (true) {
    const auto comma = line.find(',', start);
    out.push_back(trim(line.substr(start, comma - start)));
    if (comma == std::string_view::npos)
      return;
    start = comma + 1;
  }
}

/// Iterates over the lines of a text with their 1-based numbers.
class line_reader {
public:
  explicit line_reader(std::string_view text) : text_(text) {}
  bool next(std::string_view& line) {
    while (pos_ < text_.size() || (pos_ == text_.size() && !done_)) {
      const auto nl = text_.find('\n', pos_);
      const auto end = nl == std::string_view::npos ? text_.size() : nl;
      line = text_.substr(pos_, end - pos_);
      ++number_;
      pos_ = end + 1;
      done_ = nl == std::string_view::npos;
      if (!trim(line).empty())
        return true;
      if (done_)
        break;
    }
    return false;
  }
  std::size_t number() const noexcept { return number_; }

private:
  std::string_view text_;
  std::size_t pos_ = 0;
  std::size_t number_ = 0;
  bool done_ = false;
};

} // namespace

std::size_t csv_table::column(std::string_view name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name)
      return i;
  std::string present;
  for (const auto& c : columns)
    present += (present.empty() ? "'" : ", '") + c + "'";
  throw input_error("CSV " + source + ": no column '" + std::string{name} + "' (the header has " +
                    present + ")");
}

csv_table parse_csv(std::string_view text, std::string_view source) {
  const std::string src{source};
  auto fail = [&](std::size_t line, const std::string& what) -> void {
    throw input_error("CSV " + src + ":" + std::to_string(line) + ": " + what);
  };
  csv_table t;
  t.source = src;
  line_reader lines{text};
  std::string_view line;
  if (!lines.next(line))
    throw input_error("CSV " + src + ": empty file (expected a header line of column names)");
  std::vector<std::string_view> cells;
  split(line, cells);
  for (auto c : cells) {
    if (c.size() >= 2 && c.front() == '"' && c.back() == '"')
      c = c.substr(1, c.size() - 2);
    if (c.empty())
      fail(lines.number(),
           "empty column name in the header (column " + std::to_string(t.columns.size() + 1) + ")");
    for (const auto& prev : t.columns)
      if (prev == c)
        fail(lines.number(), "duplicate column name '" + std::string{c} + "' in the header");
    t.columns.emplace_back(c);
  }
  const std::size_t ncols = t.columns.size();
  t.integral.assign(ncols, true);
  std::vector<float> values;
  while (lines.next(line)) {
    split(line, cells);
    if (cells.size() != ncols)
      fail(lines.number(), std::to_string(cells.size()) + " fields, the header has " +
                               std::to_string(ncols) + " columns");
    for (std::size_t c = 0; c < ncols; ++c) {
      const auto cell = cells[c];
      const std::string where = "column '" + t.columns[c] + "': ";
      if (cell.empty())
        fail(lines.number(), where + "empty field");
      double v = 0;
      auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
      if (ec == std::errc::result_out_of_range ||
          (ec == std::errc{} && std::abs(v) > std::numeric_limits<float>::max() &&
           std::isfinite(v)))
        fail(lines.number(), where + "'" + std::string{cell} + "' is outside the f32 range");
      if (ec != std::errc{} || end != cell.data() + cell.size())
        fail(lines.number(), where + "'" + std::string{cell} + "' is not a number");
      if (!std::isfinite(v))
        fail(lines.number(), where + "'" + std::string{cell} + "' is not a finite number");
      if (t.integral[c] && (v != std::floor(v) || std::abs(v) > max_exact_integer))
        t.integral[c] = false;
      values.push_back(static_cast<float>(v));
    }
  }
  const auto rows = static_cast<std::int64_t>(values.size() / ncols);
  if (rows == 0)
    throw input_error("CSV " + src + ": no data rows after the header");
  t.values = tensor::from_vector<float>({rows, static_cast<std::int64_t>(ncols)}, values);
  return t;
}

csv_table read_csv(const std::filesystem::path& path, std::size_t max_bytes) {
  const auto bytes = read_file(path, max_bytes);
  // Unquoted, so positions read as the usual FILE:LINE.
  return parse_csv({reinterpret_cast<const char*>(bytes.data()), bytes.size()}, path.string());
}

} // namespace troupe::runtime
