// The shared reduction (actors/collectives/shared_reduction.hpp): members
// on their own threads, no actor in between. Its sums must be bitwise the
// ring all-reduce's (the plan run on plain vectors), whatever order the
// members come in; an abort must wake whoever waits; misuse is refused.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE collectives_shared_reduction
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/collectives/collective_group.hpp"
#include "actors/collectives/shared_reduction.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "plan_reference.hpp"
#include "random_tensor.hpp"

using namespace troupe;
using actors::reduction_aborted;
using actors::shared_reduction;
using runtime::tensor;
using test::random_tensor;

namespace {

/// What every rank of the ring all-reduce between processes ends with.
std::vector<float> ring_result(const std::vector<tensor>& xs) {
  const int n = static_cast<int>(xs.size());
  const auto numel = xs.front().numel();
  auto plan = test::coll::ring_allreduce(n);
  std::vector<test::rank_blocks> blocks;
  for (const auto& x : xs)
    blocks.push_back(test::split({x.data<float>(), x.data<float>() + numel}, plan.blocks));
  return test::join(test::simulate(plan, std::move(blocks)).front());
}

bool bitwise(const tensor& t, const std::vector<float>& want) {
  return t.numel() == static_cast<std::int64_t>(want.size()) &&
         std::memcmp(t.data<float>(), want.data(), want.size() * sizeof(float)) == 0;
}

/// Copies of `xs`: the reduction may sum into the inputs it is handed.
std::vector<tensor> clones(const std::vector<tensor>& xs) {
  std::vector<tensor> out;
  for (const auto& x : xs)
    out.push_back(x.clone());
  return out;
}

/// Each member on its own thread, after a random delay: contributes `xs[r]`
/// to `op`, then takes the sum.
std::vector<shared_reduction::sum> reduce_on_threads(shared_reduction& red, std::int64_t op,
                                                     const std::vector<tensor>& xs,
                                                     std::uint32_t seed) {
  std::vector<std::future<shared_reduction::sum>> futures;
  for (int r = 0; r < red.size(); ++r) {
    const auto delay =
        std::chrono::microseconds{(seed * 7919u + static_cast<unsigned>(r) * 104729u) % 2000u};
    futures.push_back(std::async(std::launch::async, [&red, op, r, delay, x = xs[r]] {
      std::this_thread::sleep_for(delay);
      red.contribute(op, r, x);
      return red.take(op, r);
    }));
  }
  std::vector<shared_reduction::sum> out;
  for (auto& f : futures)
    out.push_back(f.get());
  return out;
}

} // namespace

BOOST_AUTO_TEST_CASE(sums_are_bitwise_the_rings_in_any_arrival_order) {
  for (int n = 2; n <= 5; ++n)
    for (std::int64_t numel : {std::int64_t{1}, std::int64_t{1000}, (std::int64_t{1} << 20) + 3}) {
      shared_reduction red{n};
      for (std::uint32_t round = 0; round < 3; ++round) {
        std::vector<tensor> xs;
        for (int r = 0; r < n; ++r)
          xs.push_back(random_tensor(numel, round * 977u + static_cast<std::uint32_t>(r + 10 * n)));
        const auto want = ring_result(xs);
        auto got = reduce_on_threads(red, round, clones(xs), round + static_cast<std::uint32_t>(n));
        for (int r = 0; r < n; ++r) {
          BOOST_TEST(bitwise(got[r].data, want),
                     "n " << n << " numel " << numel << " member " << r);
          // One result buffer for all: the members read it, nobody copies it.
          BOOST_TEST(got[r].data.data<float>() == got[0].data.data<float>());
        }
      }
    }
}

BOOST_AUTO_TEST_CASE(the_summation_order_shows_so_the_bitwise_check_means_something) {
  // Summed left to right instead of in the ring's order, these inputs differ
  // in the last bits somewhere: the test above would see a wrong order.
  const int n = 4;
  std::vector<tensor> xs;
  for (int r = 0; r < n; ++r)
    xs.push_back(random_tensor(4096, 31u + static_cast<std::uint32_t>(r)));
  const auto want = ring_result(xs);
  int differ = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    float naive = 0;
    for (const auto& x : xs)
      naive += x.data<float>()[i];
    differ += naive != want[i] ? 1 : 0;
  }
  BOOST_TEST(differ > 0);
}

BOOST_AUTO_TEST_CASE(operations_in_flight_together_stay_apart) {
  // Buckets of one step overlap: members bring op 2 before op 1 and so on.
  for (int n : {2, 3}) {
    shared_reduction red{n};
    std::vector<std::vector<tensor>> xs(4);
    for (std::size_t op = 0; op < xs.size(); ++op)
      for (int r = 0; r < n; ++r)
        xs[op].push_back(random_tensor(513, static_cast<std::uint32_t>(op * 10 + r)));
    std::vector<std::thread> members;
    std::vector<std::vector<tensor>> got(n, std::vector<tensor>(xs.size()));
    for (int r = 0; r < n; ++r)
      members.emplace_back([&, r] {
        for (std::size_t k = 0; k < xs.size(); ++k) {
          const auto op = (k + static_cast<std::size_t>(r)) % xs.size();
          red.contribute(static_cast<std::int64_t>(op), r, xs[op][r].clone());
        }
        for (std::size_t op = 0; op < xs.size(); ++op)
          got[r][op] = red.take(static_cast<std::int64_t>(op), r).data;
      });
    for (auto& t : members)
      t.join();
    for (std::size_t op = 0; op < xs.size(); ++op)
      for (int r = 0; r < n; ++r)
        BOOST_TEST(bitwise(got[r][op], ring_result(xs[op])), "op " << op << " member " << r);
  }
}

BOOST_AUTO_TEST_CASE(two_members_sum_into_member_0s_input) {
  shared_reduction red{2};
  auto x0 = random_tensor(100000, 3);
  auto x1 = random_tensor(100000, 4);
  const auto want = ring_result({x0.clone(), x1.clone()});
  const float* where = x0.data<float>();
  auto got = reduce_on_threads(red, 1, {x0, x1}, 5);
  BOOST_TEST(bitwise(got[0].data, want));
  BOOST_TEST(got[0].data.data<float>() == where); // no buffer of its own
  BOOST_TEST(got[1].data.data<float>() == where);
}

// A member that finds nothing to do polls for spin_window, then sleeps; the
// last input must wake it from either (a change notifies only sleepers).
BOOST_AUTO_TEST_CASE(a_waiting_member_polling_or_asleep_gets_the_sum) {
  for (auto late : {std::chrono::microseconds{0}, shared_reduction::spin_window / 5,
                    std::chrono::microseconds{100000}}) {
    shared_reduction red{2};
    auto x0 = random_tensor(3000, 5);
    auto x1 = random_tensor(3000, 6);
    const auto want = ring_result({x0.clone(), x1.clone()});
    red.contribute(1, 0, x0);
    auto waiting = std::async(std::launch::async, [&red] { return red.take(1, 0); });
    std::this_thread::sleep_for(late);
    red.contribute(1, 1, x1);
    BOOST_REQUIRE_MESSAGE((waiting.wait_for(std::chrono::seconds{10}) == std::future_status::ready),
                          "member 0 still waits " << late.count()
                                                  << " us after the last input came");
    BOOST_TEST(bitwise(waiting.get().data, want));
    BOOST_TEST(bitwise(red.take(1, 1).data, want));
  }
}

// The last input lands around the moment the waiting member stops polling
// and goes to sleep: a change made between its last look and its sleep must
// still wake it (a member once slept through it and stalled a dp job).
BOOST_AUTO_TEST_CASE(an_input_as_the_polling_ends_still_wakes_the_member) {
  shared_reduction red{2};
  const int ops = 3000;
  auto spin_for = [](std::chrono::nanoseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
    }
  };
  auto member = [&](int r) {
    return std::async(std::launch::async, [&, r] {
      for (int op = 0; op < ops; ++op) {
        if (r == 1) // 0.8 to 1.2 spin windows late
          spin_for(shared_reduction::spin_window * 8 / 10 +
                   shared_reduction::spin_window * 4 / 10 * (op % 97) / 96);
        red.contribute(op, r, random_tensor(64, static_cast<std::uint32_t>(op)));
        red.take(op, r);
      }
    });
  };
  auto m0 = member(0);
  auto m1 = member(1);
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  bool stalled = m0.wait_until(limit) != std::future_status::ready ||
                 m1.wait_until(limit) != std::future_status::ready;
  if (stalled)
    red.abort("the test gave up: a member slept through the last input");
  BOOST_TEST(!stalled);
  BOOST_CHECK_NO_THROW(m0.get());
  BOOST_CHECK_NO_THROW(m1.get());
}

BOOST_AUTO_TEST_CASE(an_abort_wakes_every_waiting_member_with_its_reason) {
  shared_reduction red{2};
  red.contribute(7, 0, random_tensor(100, 1));
  auto waiting = std::async(std::launch::async, [&red] {
    try {
      red.take(7, 0);
      return std::string{"no exception"};
    } catch (const reduction_aborted& e) {
      return std::string{e.what()};
    }
  });
  BOOST_TEST((waiting.wait_for(std::chrono::milliseconds{100}) == std::future_status::timeout),
             "member 0 must wait for member 1");
  red.abort("layer_shard replica 1 stage 0 ended: injected exit");
  BOOST_REQUIRE((waiting.wait_for(std::chrono::seconds{10}) == std::future_status::ready));
  BOOST_TEST(waiting.get() == "layer_shard replica 1 stage 0 ended: injected exit");
  BOOST_CHECK_THROW(red.contribute(7, 1, random_tensor(100, 2)), reduction_aborted);
  BOOST_CHECK_THROW(red.take(8, 1), reduction_aborted);
  red.abort("a second reason"); // the first one stays
  BOOST_TEST(*red.aborted() == "layer_shard replica 1 stage 0 ended: injected exit");
}

// An update brought with an input (data parallelism's plain SGD on one
// parameter copy): applied once to every element, with the element's sum,
// by whichever member summed its slice.
BOOST_AUTO_TEST_CASE(an_update_sees_every_summed_slice_once) {
  for (int members : {2, 3}) {
    shared_reduction red{members};
    const std::int64_t n = 5 * shared_reduction::slice_elements + 123;
    std::vector<tensor> xs;
    for (int r = 0; r < members; ++r)
      xs.push_back(random_tensor(n, static_cast<std::uint32_t>(10 + r)));
    const auto want = ring_result(clones(xs));
    std::vector<float> seen(static_cast<std::size_t>(n), 0.f);
    std::vector<int> times(static_cast<std::size_t>(n), 0);
    auto marker = random_tensor(1, 99);
    auto update = [&](std::int64_t offset, std::int64_t count, const float* sum) {
      for (std::int64_t i = 0; i < count; ++i) {
        seen[static_cast<std::size_t>(offset + i)] = sum[i];
        ++times[static_cast<std::size_t>(offset + i)];
      }
    };
    const auto inputs = clones(xs); // handed over: a sum could be written into them
    std::vector<std::future<shared_reduction::sum>> futures;
    for (int r = 0; r < members; ++r)
      futures.push_back(std::async(std::launch::async, [&, r] {
        if (r == 0)
          red.contribute(3, r, inputs[0], update, {marker});
        else
          red.contribute(3, r, inputs[static_cast<std::size_t>(r)]);
        return red.take(3, r);
      }));
    for (auto& f : futures) {
      auto s = f.get();
      BOOST_TEST(s.updated);
      BOOST_TEST_REQUIRE(s.published.size() == 1u);
      BOOST_TEST(s.published[0].shares_storage_with(marker));
      BOOST_TEST(!s.data.defined()); // only the update read the sum
      BOOST_TEST(s.bytes == n * static_cast<std::int64_t>(sizeof(float)));
    }
    BOOST_TEST(std::memcmp(seen.data(), want.data(), want.size() * sizeof(float)) == 0);
    BOOST_TEST(std::all_of(times.begin(), times.end(), [](int t) { return t == 1; }));
    // The sum went nowhere but the update: no input holds it.
    for (int r = 0; r < members; ++r)
      BOOST_TEST(bitwise(inputs[static_cast<std::size_t>(r)],
                         {xs[static_cast<std::size_t>(r)].data<float>(),
                          xs[static_cast<std::size_t>(r)].data<float>() + n}),
                 "member " << r << "'s input");
  }
}

// Once every input of an operation with an update is in, the operation runs
// to its end even if the reduction is aborted meanwhile: a half-made update
// would leave parameters no replica ever had.
BOOST_AUTO_TEST_CASE(an_update_under_way_ends_even_after_an_abort) {
  shared_reduction red{2};
  const std::int64_t n = 8 * shared_reduction::slice_elements;
  std::atomic<std::int64_t> updated{0};
  std::promise<void> first_slice;
  std::atomic<bool> told{false};
  std::promise<void> aborted;
  auto aborted_f = aborted.get_future().share();
  auto update = [&](std::int64_t, std::int64_t count, const float*) {
    updated += count;
    if (!told.exchange(true)) {
      first_slice.set_value();
      aborted_f.wait(); // the abort comes while this member sums
    }
  };
  red.contribute(5, 0, random_tensor(n, 1), update, {});
  red.contribute(5, 1, random_tensor(n, 2));
  auto member0 = std::async(std::launch::async, [&] { return red.take(5, 0).updated; });
  first_slice.get_future().wait();
  red.abort("replica 1 ended");
  aborted.set_value();
  BOOST_TEST(member0.get()); // no exception: the operation ended
  BOOST_TEST(updated.load() == n);
  BOOST_TEST(red.wait_for_updates(std::chrono::milliseconds{0}));
  BOOST_CHECK_THROW(red.take(6, 1), reduction_aborted); // the next one fails
}

BOOST_AUTO_TEST_CASE(misuse_is_refused) {
  shared_reduction red{2};
  BOOST_CHECK_THROW(shared_reduction{0}, std::invalid_argument);
  BOOST_CHECK_THROW(red.contribute(1, 2, random_tensor(4, 1)), std::logic_error);
  BOOST_CHECK_THROW(red.contribute(1, 0, tensor{}), std::logic_error);
  red.contribute(1, 0, random_tensor(4, 1));
  BOOST_CHECK_THROW(red.contribute(1, 0, random_tensor(4, 1)), std::logic_error);
  BOOST_CHECK_THROW(red.contribute(1, 1, random_tensor(5, 1)), std::logic_error);
  red.contribute(1, 1, random_tensor(4, 2));
  BOOST_CHECK_THROW(red.contribute(1, 1, random_tensor(4, 2)), std::logic_error);
  red.take(1, 0);
  BOOST_CHECK_THROW(red.take(1, 0), std::logic_error);
  BOOST_CHECK_THROW(red.take(1, -1), std::logic_error);
}

BOOST_AUTO_TEST_CASE(the_ranks_of_an_in_process_group_hand_out_one_reduction) {
  actors::system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto ask = [&](const caf::actor& rank) {
    std::shared_ptr<shared_reduction> out;
    self->request(rank, std::chrono::seconds{10}, actors::shared_reduction_atom::value)
        .receive([&](actors::shared_reduction_ref& ref) { out = ref.reduction; },
                 [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
    return out;
  };
  auto group = actors::spawn_collective_group(sys, 3, {});
  auto first = ask(group[0]);
  BOOST_REQUIRE(first);
  BOOST_TEST(first->size() == 3);
  BOOST_TEST(ask(group[2]) == first);
  BOOST_TEST(ask(group[1]) == first);
  // A group of one has nothing to reduce.
  auto alone = actors::spawn_collective_group(sys, 1, {});
  BOOST_TEST(!ask(alone[0]));
  // The group ends: whoever still waits in its reduction is woken.
  for (auto& r : group)
    self->send_exit(r, caf::exit_reason::user_shutdown);
  for (auto& r : alone)
    self->send_exit(r, caf::exit_reason::user_shutdown);
  group.clear();
  alone.clear();
  BOOST_CHECK_THROW(first->take(1, 0), reduction_aborted);
}
