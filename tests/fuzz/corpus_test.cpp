#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE transport_bad_frame_corpus
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/net/transport/frame.hpp"

using namespace troupe::runtime;
using namespace troupe::runtime::transport;

namespace {

std::vector<std::byte> read_all(const std::filesystem::path& p) {
  std::ifstream f{p, std::ios::binary};
  std::vector<char> c{std::istreambuf_iterator<char>{f}, {}};
  std::vector<std::byte> out(c.size());
  std::transform(c.begin(), c.end(), out.begin(), [](char x) { return static_cast<std::byte>(x); });
  return out;
}

} // namespace

// Replays tests/fuzz/corpus (see make_corpus.py) through the decoders with
// the same 64 MiB payload cap as the fuzzer.
BOOST_AUTO_TEST_CASE(corpus_is_accepted_or_rejected_as_named) {
  std::filesystem::path dir = std::filesystem::path{TROUPE_SOURCE_DIR} / "tests/fuzz/corpus";
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator{dir})
    if (e.is_regular_file())
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  BOOST_TEST_REQUIRE(files.size() >= 30u);
  std::size_t ok = 0, bad = 0;
  for (const auto& p : files) {
    auto name = p.filename().string();
    bool expect_ok = name.find("_ok_") != std::string::npos;
    bool expect_bad = name.find("_bad_") != std::string::npos;
    BOOST_TEST_REQUIRE((expect_ok != expect_bad), name << ": name must contain _ok_ or _bad_");
    auto bytes = read_all(p);
    bool accepted = false;
    std::string why;
    try {
      if (name.starts_with("frame_"))
        decode_frame_header(bytes, frame_limits{64u << 20});
      else if (name.starts_with("hs_"))
        decode_handshake_message(bytes);
      else
        BOOST_FAIL(name << ": name must start with frame_ or hs_");
      accepted = true;
    } catch (const input_error& e) {
      why = e.what();
    }
    BOOST_TEST_INFO(name << (accepted ? ": accepted" : ": rejected: " + why));
    BOOST_TEST(accepted == expect_ok);
    (accepted ? ok : bad) += 1;
  }
  BOOST_TEST_MESSAGE(files.size() << " corpus files: " << ok << " accepted, " << bad << " rejected");
}
