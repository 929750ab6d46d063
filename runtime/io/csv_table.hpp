#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Largest CSV file read_csv accepts (4 GiB): the file is held in memory while parsed.
inline constexpr std::size_t csv_default_max_bytes = std::size_t{4} << 30;

/// A numeric table read from a CSV file with a header line.
struct csv_table {
  std::vector<std::string> columns; ///< the header's names, in file order
  tensor values;                    ///< f32 [rows, columns.size()], row-major
  /// Per column: every value is an integer small enough to be exact in an f32
  /// (|v| <= 2^24), so the column can hold class labels.
  std::vector<bool> integral;

  /// Index of the column called `name`; throws input_error naming the columns present.
  std::size_t column(std::string_view name) const;
  std::string source; ///< the file, for messages
};

/// Parses CSV text: the first line names the columns (comma separated, names may be
/// double-quoted), every later line holds one number per column (std::from_chars
/// syntax: decimal or exponent notation; spaces around a value are ignored). Line
/// ends may be "\n" or "\r\n"; blank lines are skipped. Throws input_error naming
/// `source`, the line and the column for an empty field, a value that is not a
/// number, NaN or infinity, a value outside the f32 range, and a row with the
/// wrong number of fields; also for no header, duplicate or empty column names,
/// and no data rows.
csv_table parse_csv(std::string_view text, std::string_view source = "<memory>");

/// Reads and parses a CSV file. Throws input_error naming the file.
csv_table read_csv(const std::filesystem::path& path,
                   std::size_t max_bytes = csv_default_max_bytes);

} // namespace troupe::runtime
