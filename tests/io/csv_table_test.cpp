#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_csv_table
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/io/csv_table.hpp"
#include "temp_dir.hpp"

using namespace troupe::runtime;
using troupe::test::message_has;
using troupe::test::temp_dir;

namespace {

std::vector<float> values(const csv_table& t) {
  return {t.values.values<float>().begin(), t.values.values<float>().end()};
}

} // namespace

BOOST_AUTO_TEST_CASE(reads_a_header_and_numbers) {
  temp_dir dir;
  troupe::test::write_plain<char>(dir / "t.csv",
                                  std::string{"a, \"b\",label\r\n1.5,-2e3, 3\r\n\n0,.25,-1\n"});
  auto t = read_csv(dir / "t.csv");
  BOOST_TEST((t.columns == std::vector<std::string>{"a", "b", "label"}));
  BOOST_TEST((t.values.shape() == shape_t{2, 3}));
  BOOST_TEST((values(t) == std::vector<float>{1.5f, -2000, 3, 0, 0.25f, -1}));
  BOOST_TEST((t.integral == std::vector<bool>{false, false, true}));
  BOOST_TEST(t.column("label") == 2u);
  // Integers too large to be exact in f32 are not labels.
  auto big = parse_csv("y\n16777216\n16777217\n");
  BOOST_TEST(!big.integral[0]);
  auto ok = parse_csv("y\n16777216\n-3\n");
  BOOST_TEST(ok.integral[0]);
}

// Each bad cell names the file, the line and the column.
BOOST_AUTO_TEST_CASE(rejects_bad_cells) {
  const std::string head = "a,b\n1,2\n";
  BOOST_CHECK_EXCEPTION(parse_csv(head + "3,\n", "f.csv"), input_error,
                        message_has("f.csv:3", "column 'b'", "empty field"));
  BOOST_CHECK_EXCEPTION(parse_csv(head + "x1,2\n", "f.csv"), input_error,
                        message_has("f.csv:3", "column 'a'", "'x1' is not a number"));
  BOOST_CHECK_EXCEPTION(parse_csv(head + "1,2.5kg\n", "f.csv"), input_error,
                        message_has("f.csv:3", "column 'b'", "'2.5kg' is not a number"));
  BOOST_CHECK_EXCEPTION(parse_csv(head + "nan,2\n", "f.csv"), input_error,
                        message_has("f.csv:3", "column 'a'", "not a finite number"));
  BOOST_CHECK_EXCEPTION(parse_csv(head + "1,-inf\n", "f.csv"), input_error,
                        message_has("f.csv:3", "column 'b'", "not a finite number"));
  BOOST_CHECK_EXCEPTION(parse_csv(head + "1,1e39\n", "f.csv"), input_error,
                        message_has("f.csv:3", "column 'b'", "outside the f32 range"));
  BOOST_CHECK_EXCEPTION(parse_csv(head + "1,2,3\n", "f.csv"), input_error,
                        message_has("f.csv:3", "3 fields, the header has 2 columns"));
  BOOST_CHECK_EXCEPTION(parse_csv(head + "\n\n7\n", "f.csv"), input_error,
                        message_has("f.csv:5", "1 fields"));
}

BOOST_AUTO_TEST_CASE(rejects_bad_headers_and_empty_files) {
  BOOST_CHECK_EXCEPTION(parse_csv("", "e.csv"), input_error, message_has("e.csv", "empty file"));
  BOOST_CHECK_EXCEPTION(parse_csv("a,b\n", "h.csv"), input_error,
                        message_has("h.csv", "no data rows"));
  BOOST_CHECK_EXCEPTION(parse_csv("a,,c\n1,2,3\n", "n.csv"), input_error,
                        message_has("n.csv:1", "empty column name"));
  BOOST_CHECK_EXCEPTION(parse_csv("a,a\n1,2\n", "d.csv"), input_error,
                        message_has("d.csv:1", "duplicate column name 'a'"));
  auto t = parse_csv("a,b\n1,2\n", "c.csv");
  BOOST_CHECK_EXCEPTION(t.column("price"), input_error,
                        message_has("c.csv", "no column 'price'", "'a', 'b'"));
  temp_dir dir;
  BOOST_CHECK_EXCEPTION(read_csv(dir / "absent.csv"), input_error, message_has("absent.csv"));
}
