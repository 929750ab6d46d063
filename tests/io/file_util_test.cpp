#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_file_util
#include <boost/test/unit_test.hpp>

#include <array>
#include <cstring>
#include <string>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "temp_dir.hpp"

using namespace troupe::runtime;
using troupe::test::message_has;
using troupe::test::temp_dir;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string as_string(const std::vector<std::byte>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

} // namespace

BOOST_AUTO_TEST_CASE(write_then_read_back_and_overwrite) {
  temp_dir dir;
  auto p = dir / "a.bin";
  write_file_atomically(p, bytes_of("hello"));
  BOOST_TEST(as_string(read_file(p, 100)) == "hello");
  write_file_atomically(p, bytes_of("replaced, longer"));
  BOOST_TEST(as_string(read_file(p, 100)) == "replaced, longer");
  write_file_atomically(p, bytes_of(""));
  BOOST_TEST(read_file(p, 100).empty());
  // No temporary files are left behind.
  int entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir.path()))
    ++entries;
  BOOST_TEST(entries == 1);
}

BOOST_AUTO_TEST_CASE(scatter_write_concatenates_buffers) {
  temp_dir dir;
  auto p = dir / "scatter.bin";
  std::string a = "head", b, c = "-tail";
  std::string big(3 << 20, 'x'); // larger than one pipe-sized write
  std::array<std::span<const std::byte>, 4> bufs{bytes_of(a), bytes_of(b), bytes_of(big),
                                                 bytes_of(c)};
  write_file_atomically(p, std::span<const std::span<const std::byte>>{bufs});
  BOOST_TEST(as_string(read_file(p, 4 << 20)) == a + b + big + c);
}

BOOST_AUTO_TEST_CASE(write_into_unwritable_location_throws_input_error) {
  temp_dir dir;
  // Tests run as root, so permissions are no obstacle: use a regular file as
  // the directory, and a path under /proc.
  auto file = dir / "not-a-dir";
  write_file_atomically(file, bytes_of("x"));
  auto target = file / "child.bin";
  BOOST_CHECK_EXCEPTION(write_file_atomically(target, bytes_of("data")), input_error,
                        message_has(target.string(), "Not a directory"));
  BOOST_CHECK_EXCEPTION(write_file_atomically("/proc/troupe-io-test.bin", bytes_of("data")),
                        input_error, message_has("/proc/troupe-io-test.bin"));
  BOOST_CHECK_EXCEPTION(write_file_atomically(dir / "missing" / "x.bin", bytes_of("data")),
                        input_error, message_has("missing", "No such file or directory"));
  // Renaming over a directory fails and leaves no temporary file.
  std::filesystem::create_directory(dir / "a-dir");
  BOOST_CHECK_THROW(write_file_atomically(dir / "a-dir", bytes_of("data")), input_error);
  int entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir.path()))
    ++entries;
  BOOST_TEST(entries == 2);
}

BOOST_AUTO_TEST_CASE(read_file_errors) {
  temp_dir dir;
  BOOST_CHECK_EXCEPTION(read_file(dir / "nope", 10), input_error,
                        message_has("nope", "No such file or directory"));
  write_file_atomically(dir / "ten", bytes_of("0123456789"));
  BOOST_TEST(read_file(dir / "ten", 10).size() == 10u);
  BOOST_CHECK_EXCEPTION(read_file(dir / "ten", 9), input_error, message_has("ten", "limit of 9"));
  BOOST_CHECK_EXCEPTION(read_file(dir.path(), 10), input_error, message_has("not a regular file"));
  // Files whose st_size is 0 but which have contents (procfs) are read to EOF.
  BOOST_TEST(!read_file("/proc/self/status", 1 << 20).empty());
}

BOOST_AUTO_TEST_CASE(sha256_known_values) {
  BOOST_TEST(sha256_hex(bytes_of("")) ==
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  BOOST_TEST(sha256_hex(bytes_of("abc")) ==
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // The shipped data set matches the checksum recorded with it.
  auto labels = read_file(
      std::filesystem::path{TROUPE_SOURCE_DIR} / "data/mnist/train-labels-idx1-ubyte.gz", 1 << 20);
  BOOST_TEST(sha256_hex(labels) ==
             "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203");
}
