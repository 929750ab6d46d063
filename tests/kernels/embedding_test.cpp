#define BOOST_TEST_MODULE kernels_embedding
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <stdexcept>

#include "kernels/cpu/embedding.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

BOOST_AUTO_TEST_CASE(forward_gathers_rows) {
  for (std::int64_t dim : {1, 3, 33})
    for (std::int64_t n : {1, 7, 127}) {
      const std::int64_t vocab = 11;
      auto table = random_vector(static_cast<std::size_t>(vocab * dim));
      std::vector<std::int32_t> ids(n);
      for (auto& id : ids)
        id = static_cast<std::int32_t>(random_int(0, vocab - 1));
      std::vector<float> y(n * dim);
      embedding_forward(table.data(), vocab, dim, ids.data(), n, y.data());
      std::vector<double> want(y.size());
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t c = 0; c < dim; ++c)
          want[i * dim + c] = table[ids[i] * dim + c];
      check_close(y, want, 0, 0, "embedding_forward");
    }
}

BOOST_AUTO_TEST_CASE(backward_scatters_with_repeats_and_accumulate) {
  for (bool accumulate : {false, true}) {
    const std::int64_t vocab = 9, dim = 7, n = 33;
    std::vector<std::int32_t> ids(n);
    for (auto& id : ids)
      id = static_cast<std::int32_t>(random_int(0, 3)); // many repeats
    auto dy = random_vector(static_cast<std::size_t>(n * dim));
    auto dtable = random_vector(static_cast<std::size_t>(vocab * dim));
    std::vector<double> want(dtable.size(), 0.0);
    if (accumulate)
      want.assign(dtable.begin(), dtable.end());
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < dim; ++c)
        want[ids[i] * dim + c] += dy[i * dim + c];
    embedding_backward(dy.data(), ids.data(), n, vocab, dim, dtable.data(), accumulate);
    check_close(dtable, want, 1e-6, 1e-6, "embedding_backward");
  }
}

BOOST_AUTO_TEST_CASE(bad_ids_throw_and_write_nothing) {
  const std::int64_t vocab = 5, dim = 3;
  std::vector<float> table(vocab * dim, 1.f), y(3 * dim, -3.f), dy(3 * dim, 1.f);
  for (std::int32_t bad : {-1, 5, 1 << 30}) {
    std::vector<std::int32_t> ids = {0, 4, bad};
    BOOST_CHECK_THROW(embedding_forward(table.data(), vocab, dim, ids.data(), 3, y.data()),
                      std::out_of_range);
    for (float v : y)
      BOOST_TEST(v == -3.f);
    BOOST_CHECK_THROW(embedding_backward(dy.data(), ids.data(), 3, vocab, dim, table.data(), false),
                      std::out_of_range);
    for (float v : table)
      BOOST_TEST(v == 1.f);
  }
}
